"""Batch streams: the contract every training and evaluation data set of the project follows, written once.

Training streams are *index-addressed*: batch ``g`` of the run (its global index) is a pure function of
``(seed, g)``. After ``G`` global batches have been trained, rank ``r`` of ``world_size`` takes the global batches
``G + b * world_size + r`` (b = 0, 1, ...), and DataLoader workers split a rank's batches among themselves, so

* ranks never draw each other's batches, and N ranks together draw exactly the batches one process would draw in N
  times as many steps;
* the loader yields the same sequence whatever the number of workers;
* a resumed run continues the stream exactly after the ``G`` global batches already trained, whatever its number of
  ranks or its accumulation: a run saved with 2 ranks and resumed with 1 neither repeats nor skips a batch. ``G`` is
  the run state's answer (``lit_gpt5.resume.state.global_batches_trained``).

Evaluation batches are the opposite: a fixed, finite list, each item scored exactly once across ranks and workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_gpt5.errors import UserError
from lit_gpt5.resume.state import micro_batches_trained


def check_positive(**values: int) -> None:
    """A clear error for a size that must be a positive integer (names the argument and the value)."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


def check_fraction(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < value < 1.0:
        raise UserError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")


def worker_shard() -> tuple[int, int]:
    """(this DataLoader worker's id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def trainer_position(trainer: L.Trainer | None) -> tuple[int, int, int]:
    """(rank, world size, micro-batches already trained) of a run: where a rank's batch stream starts or resumes.

    Resuming restores ``global_step``; the micro-batches behind those optimizer steps are skipped, so the stream
    continues exactly (Lightning's own bookkeeping would replay or skip one batch of an endless iterable). Where the
    run stands is the run state's answer (``lit_gpt5.resume.state``).
    """
    if trainer is None:
        return 0, 1, 0
    return trainer.global_rank, trainer.world_size, micro_batches_trained(trainer)


def batch_loader(dataset: IterableDataset, num_workers: int) -> DataLoader:
    """A DataLoader over a dataset that yields whole batches."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


class IndexedBatchStream(IterableDataset):
    """An endless stream of batches, batch ``g`` a pure function of ``(seed, g)`` (see the module docstring).

    Subclasses implement ``global_batch(g)``; ``batch(b)`` is this rank's ``b``-th batch.
    """

    def __init__(
        self, seed: int = 0, rank: int = 0, world_size: int = 1, start_batch: int = 0, global_start: int | None = None
    ) -> None:
        super().__init__()
        check_positive(world_size=world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if start_batch < 0 or (global_start is not None and global_start < 0):
            raise ValueError(f"start_batch and global_start must be >= 0, got {start_batch}, {global_start}")
        self.seed, self.rank, self.world_size, self.start_batch = seed, rank, world_size, start_batch
        # Global batches already trained; this rank continues at global_start + rank, then every world_size-th.
        self.global_start = start_batch * world_size if global_start is None else global_start

    def global_index(self, batch_index: int) -> int:
        """The run-wide index of this rank's batch ``batch_index``."""
        return batch_index * self.world_size + self.rank

    def global_batch(self, index: int) -> Any:
        raise NotImplementedError

    def batch(self, batch_index: int) -> Any:
        return self.global_batch(self.global_index(batch_index))

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = worker_shard()
        k = worker
        while True:
            yield self.global_batch(self.global_start + k * self.world_size + self.rank)
            k += num_workers


class EvalBatches(IterableDataset):
    """A finite list of evaluation batches, each yielded exactly once across ranks and DataLoader workers.

    ``groups`` are the item indices of each batch, in order; rank ``r`` takes groups ``r, r + world_size, ...`` and
    its workers split those again. Unlike a DistributedSampler nothing is repeated to even out the ranks, so a
    weighted mean reduced over ranks is exact. ``make_batch`` turns a group of indices into a batch.
    """

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        make_batch: Callable[[Sequence[int]], Any],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.groups = list(groups)[rank::world_size]
        self.make_batch = make_batch

    @classmethod
    def chunked(
        cls,
        order: Sequence[int],
        batch_size: int,
        make_batch: Callable[[Sequence[int]], Any],
        rank: int = 0,
        world_size: int = 1,
    ) -> EvalBatches:
        """Batches of ``batch_size`` consecutive items of ``order``."""
        check_positive(batch_size=batch_size)
        order = list(order)
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return cls(groups, make_batch, rank, world_size)

    @property
    def num_batches(self) -> int:
        """Batches this rank yields. Not ``__len__``: Lightning would then warn about worker sharding, done here."""
        return len(self.groups)

    def __iter__(self) -> Iterator[Any]:
        worker, num_workers = worker_shard()
        for group in self.groups[worker::num_workers]:
            yield self.make_batch(group)


def __getattr__(name: str) -> object:  # names of 0.1 that moved (lit_gpt5.old_paths)
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
