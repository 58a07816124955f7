"""Windows of a token tensor: the data side of Model 5.

Training does not walk the text epoch by epoch (unless asked to: see ``lit_gpt5.data.starts``). Every batch is
drawn fresh: B start positions, an index tensor ``starts[:, None] + arange(T + 1)``, and one gather, so X is (B, T)
and Y is X shifted by one token. Validation is the opposite: deterministic, non-overlapping windows that score every
held-out token exactly once. ``lit_gpt5.data.window_module.TokenWindowDataModule`` serves both to a Trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch

from lit_gpt5.data.segments import Segments, TensorSegments, segment_windows, split_bounds, window_rows
from lit_gpt5.data.starts import Sampling, WindowStarts, make_starts
from lit_gpt5.data.streams import EvalBatches, IndexedBatchStream, check_fraction, check_positive
from lit_gpt5.errors import UserError

Split = Literal["tail", "interleaved"]
SPLITS = ("tail", "interleaved")


def as_segments(tokens: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One 1-D integer tensor or a list of them, as int32 (indexes everywhere, half the memory of int64)."""
    segments = [tokens] if isinstance(tokens, torch.Tensor) else list(tokens)
    for seg in segments:
        if seg.ndim != 1 or seg.is_floating_point() or seg.is_complex():
            raise UserError(f"token tensors must be 1-D integer tensors, got shape {tuple(seg.shape)} {seg.dtype}")
    return [seg.to(torch.int32) for seg in segments]


class RandomWindowDataset(IndexedBatchStream):
    """An endless stream of whole batches ``(x, y)`` of windows: LongTensors of shape (batch_size, block_size).

    ``tokens`` is one 1-D tensor, a list of them (segments: the training blocks of an interleaved split, or several
    books), or ``Segments`` (e.g. the documents of a token store on disk); a window never crosses a segment's end, so
    it can never span a train/test boundary or two documents. ``sampling`` chooses the start positions (``random``
    by default; ``shuffled`` and ``sequential`` walk epochs of non-overlapping windows, see
    ``lit_gpt5.data.starts``; ``starts`` given directly override it). Batch ``b`` of rank ``rank`` is global
    batch ``b * world_size + rank``, a pure function of (seed, global index): see ``lit_gpt5.data.streams``.
    """

    def __init__(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor] | Segments,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        sampling: Sampling = "random",
        random_offset: bool = False,
        global_start: int | None = None,
        window_starts: WindowStarts | None = None,
    ) -> None:
        super().__init__(seed, rank, world_size, start_batch, global_start)
        check_positive(block_size=block_size, batch_size=batch_size)
        self.segments = tokens if isinstance(tokens, Segments) else TensorSegments(as_segments(tokens))
        self.block_size, self.batch_size = block_size, batch_size
        self.window_starts: WindowStarts = window_starts or make_starts(
            sampling, self.segments.lengths.tolist(), block_size, batch_size, seed, random_offset
        )

    @property
    def tokens(self) -> torch.Tensor:
        """The concatenated segments, when they are in memory."""
        return self.segments.tokens

    def starts(self, batch_index: int) -> torch.Tensor:
        """Start positions (into the concatenated segments) of this rank's batch ``batch_index``."""
        return self.window_starts.starts(self.global_index(batch_index))

    def global_batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.segments.gather(self.window_starts.starts(index), self.block_size + 1)
        return windows[:, :-1], windows[:, 1:]


def validation_windows(
    tokens: torch.Tensor | Sequence[torch.Tensor] | Segments,
    block_size: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
) -> EvalBatches:
    """Deterministic, non-overlapping windows that make every held-out token (but each segment's first) a target once.

    Windows advance by ``block_size``; the last window of a segment is shorter and padded, its padding targets set to
    -100 so the loss ignores them. Ranks and workers share the batches without repeats (``EvalBatches``); each batch
    is read when it is needed, so a held-out set on disk is never loaded whole.
    """
    check_positive(block_size=block_size, batch_size=batch_size, world_size=world_size)
    segments = tokens if isinstance(tokens, Segments) else TensorSegments(as_segments(tokens))
    windows = segment_windows(segments, block_size)
    if not windows:
        raise UserError(
            "the held-out split has fewer than 2 tokens, nothing to validate on; raise --data.val_fraction "
            "or use a longer text"
        )
    make_batch = partial(_rows, segments, windows, block_size)
    return EvalBatches.chunked(range(len(windows)), batch_size, make_batch, rank, world_size)


def _rows(segments: Segments, windows: list, block_size: int, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return window_rows(segments, [windows[i] for i in index], block_size)


def split_tokens(
    tokens: torch.Tensor, val_fraction: float = 0.1, split: Split = "tail", blocks: int = 100
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split a 1-D token tensor into (train segments, held-out segments).

    ``tail``: the last ``val_fraction`` of the text is held out, as in the original experiment. ``interleaved``: the
    text is cut into ``blocks`` equal blocks and every (1/val_fraction)-th block is held out, so both splits sample
    the whole book (the tail split's test text is the end of the last voyage only).
    """
    check_fraction("val_fraction", val_fraction)
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "interleaved" and blocks < 2:
        raise UserError(f"an interleaved split needs at least 2 blocks, got {blocks}")
    train, held_out = split_bounds(len(tokens), val_fraction, split, blocks)
    if not held_out:
        raise UserError(f"val_fraction={val_fraction} holds out none of {blocks} blocks; raise either")
    return [tokens[a:b] for a, b in train], [tokens[a:b] for a, b in held_out]


def first_fraction(segments: list[torch.Tensor], fraction: float) -> list[torch.Tensor]:
    """The first ``fraction`` of the tokens of ``segments``, in text order (the last segment kept cut short): the
    training text of a data-constrained run, whose held-out text stays what it was."""
    keep = round(fraction * sum(len(s) for s in segments))
    out = []
    for segment in segments:
        if keep <= 0:
            break
        out.append(segment[:keep])
        keep -= len(out[-1])
    return out


def __getattr__(name: str) -> object:  # names of 0.1 that moved (lit_gpt5.old_paths)
    from lit_gpt5.old_paths import moved_names

    return moved_names(__name__)(name)
