"""Random windows of a token tensor: the data side of Model 5.

Training does not walk the text epoch by epoch. Every batch is drawn fresh: B random start positions, an index tensor
``starts[:, None] + arange(T + 1)``, and one gather, so X is (B, T) and Y is X shifted by one token. The stream of
batches is a pure function of (seed, global batch index), which is what lets a resumed run continue it exactly.
Validation is the opposite: deterministic, non-overlapping windows that score every held-out token exactly once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lit_gpt5.errors import UserError
from lit_gpt5.files import atomic_path
from lit_gpt5.loss import IGNORE_INDEX

Split = Literal["tail", "interleaved"]


def worker_shard() -> tuple[int, int]:
    """(this DataLoader worker's id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def trainer_position(trainer: L.Trainer | None) -> tuple[int, int, int]:
    """(rank, world size, micro-batches already trained) of a run: where a rank's batch stream starts or resumes.

    Resuming restores ``global_step``; the micro-batches behind those optimizer steps are skipped, so the stream
    continues exactly (Lightning's own bookkeeping would replay or skip one batch of an endless iterable).
    """
    if trainer is None:
        return 0, 1, 0
    return trainer.global_rank, trainer.world_size, trainer.global_step * trainer.accumulate_grad_batches


def batch_loader(dataset: IterableDataset, num_workers: int) -> DataLoader:
    """A DataLoader over a dataset that yields whole batches."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _as_segments(tokens: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    segments = [tokens] if isinstance(tokens, torch.Tensor) else list(tokens)
    for seg in segments:
        if seg.ndim != 1 or seg.is_floating_point() or seg.is_complex():
            raise UserError(f"token tensors must be 1-D integer tensors, got shape {tuple(seg.shape)} {seg.dtype}")
    # int32 indexes everywhere (uint16 only on recent torch) and halves the memory of int64.
    return [seg.to(torch.int32) for seg in segments]


class RandomWindowDataset(IterableDataset):
    """An endless stream of whole batches ``(x, y)`` of random windows: LongTensors of shape (batch_size, block_size).

    ``tokens`` is one 1-D tensor or a list of them (segments, e.g. the training blocks of an interleaved split);
    a window never crosses a segment's end, so it can never span a train/test boundary.

    Batch ``b`` of rank ``rank`` is global batch ``b * world_size + rank``; its start positions come from a generator
    seeded with (seed, global batch index). Hence ranks never draw each other's batches, N ranks together draw exactly
    the batches one process would draw in N times as many steps, and DataLoader workers split the batch indices
    among themselves (worker w of W takes b = w, w + W, ...) so the loader yields the same sequence whatever the
    number of workers. ``start_batch`` skips the batches a resumed run has already trained on.
    """

    def __init__(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor],
        block_size: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        super().__init__()
        _check_positive(block_size=block_size, batch_size=batch_size, world_size=world_size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        segments = _as_segments(tokens)
        self.block_size, self.batch_size = block_size, batch_size
        self.seed, self.rank, self.world_size, self.start_batch = seed, rank, world_size, start_batch
        self.tokens = torch.cat(segments) if segments else torch.empty(0, dtype=torch.int32)
        lengths = torch.tensor([len(s) for s in segments], dtype=torch.long)
        seg_offsets = torch.cumsum(lengths, 0) - lengths
        # A segment of length L has L - block_size valid starts (the window holds block_size + 1 tokens).
        counts = (lengths - block_size).clamp(min=0)
        self.num_starts = int(counts.sum())
        if self.num_starts == 0:
            longest = int(lengths.max()) if len(lengths) else 0
            raise UserError(
                f"the training text has {longest} tokens in its longest segment, too few for one "
                f"window of block_size + 1 = {block_size + 1}; use a longer text or a smaller --data.block_size"
            )
        # Uniform over all valid starts: draw u in [0, num_starts) and map it to (segment, offset in segment).
        keep = counts > 0
        self._seg_offsets = seg_offsets[keep]
        self._cum_counts = torch.cumsum(counts[keep], 0)
        self._cum_before = self._cum_counts - counts[keep]
        self._arange = torch.arange(block_size + 1)

    def starts(self, batch_index: int) -> torch.Tensor:
        """Start positions (into ``self.tokens``) of this rank's batch ``batch_index``."""
        global_index = batch_index * self.world_size + self.rank
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, global_index])))
        u = torch.from_numpy(rng.integers(0, self.num_starts, size=self.batch_size, dtype=np.int64))
        seg = torch.searchsorted(self._cum_counts, u, right=True)
        return self._seg_offsets[seg] + (u - self._cum_before[seg])

    def batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.tokens[self.starts(batch_index)[:, None] + self._arange].long()
        return windows[:, :-1], windows[:, 1:]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker, num_workers = worker_shard()
        b = self.start_batch + worker
        while True:
            yield self.batch(b)
            b += num_workers


class ValidationWindows(IterableDataset):
    """Deterministic, non-overlapping windows that make every held-out token (but each segment's first) a target once.

    Windows advance by ``block_size``; the last window of a segment is shorter and padded, its padding targets set to
    -100 so the loss ignores them. Window ``i`` belongs to rank ``i % world_size``: ranks share the work without the
    repeated samples a DistributedSampler would add, so a token-weighted mean reduced over ranks is exact.
    """

    def __init__(
        self,
        tokens: torch.Tensor | Sequence[torch.Tensor],
        block_size: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        _check_positive(block_size=block_size, batch_size=batch_size, world_size=world_size)
        self.block_size, self.batch_size, self.rank, self.world_size = block_size, batch_size, rank, world_size
        self.windows: list[tuple[torch.Tensor, torch.Tensor]] = []
        for seg in _as_segments(tokens):
            for i in range(0, len(seg) - 1, block_size):
                chunk = seg[i : i + block_size + 1].long()
                x = torch.zeros(block_size, dtype=torch.long)
                y = torch.full((block_size,), IGNORE_INDEX, dtype=torch.long)
                x[: len(chunk) - 1] = chunk[:-1]
                y[: len(chunk) - 1] = chunk[1:]
                self.windows.append((x, y))
        if not self.windows:
            raise UserError(
                "the held-out split has fewer than 2 tokens, nothing to validate on; raise --data.val_fraction "
                "or use a longer text"
            )
        self.num_targets = sum(int((y != IGNORE_INDEX).sum()) for _, y in self.windows)

    @property
    def num_batches(self) -> int:
        """Batches this rank yields. Not ``__len__``: Lightning would then warn about worker sharding, done here."""
        mine = len(range(self.rank, len(self.windows), self.world_size))
        return -(-mine // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        worker, num_workers = worker_shard()
        mine = self.windows[self.rank :: self.world_size]
        # DataLoader workers take every num_workers-th batch, so none is scored twice.
        for i in range(worker * self.batch_size, len(mine), num_workers * self.batch_size):
            xs, ys = zip(*mine[i : i + self.batch_size], strict=True)
            yield torch.stack(xs), torch.stack(ys)


def split_tokens(
    tokens: torch.Tensor, val_fraction: float = 0.1, split: Split = "tail", blocks: int = 100
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split a 1-D token tensor into (train segments, held-out segments).

    ``tail``: the last ``val_fraction`` of the text is held out, as in the original experiment. ``interleaved``: the
    text is cut into ``blocks`` equal blocks and every (1/val_fraction)-th block is held out, so both splits sample
    the whole book (the tail split's test text is the end of the last voyage only).
    """
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(tokens)
    if split == "tail":
        cut = n - max(1, round(n * val_fraction))
        return [tokens[:cut]], [tokens[cut:]]
    if split == "interleaved":
        if blocks < 2:
            raise UserError(f"an interleaved split needs at least 2 blocks, got {blocks}")
        bounds = [round(i * n / blocks) for i in range(blocks + 1)]
        train, held_out = [], []
        for i in range(blocks):
            # Block i is held out when it crosses a multiple of 1/val_fraction: every 10th block for 0.1.
            is_val = int((i + 1) * val_fraction) > int(i * val_fraction)
            (held_out if is_val else train).append(tokens[bounds[i] : bounds[i + 1]])
        if not held_out:
            raise UserError(f"val_fraction={val_fraction} holds out none of {blocks} blocks; raise either")
        return train, held_out
    raise UserError(f"split must be 'tail' or 'interleaved', got {split!r}")


def tokenize_cached(text: str, cache_dir: str | os.PathLike, tokenizer=None) -> torch.Tensor:
    """Token ids of ``text`` as a uint16 tensor, cached in ``cache_dir`` keyed by the text's sha256 and the tokenizer.

    The cache is a safetensors file that records the hash of its own tokens: a damaged file is detected, rebuilt
    and never trained on.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    from lit_gpt5.tokenizer import get_tokenizer

    tokenizer = tokenizer or get_tokenizer()
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    path = Path(cache_dir) / f"tokens-{text_sha[:16]}-{tokenizer.name}.safetensors"
    if path.exists():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta, tokens = f.metadata() or {}, f.get_tensor("tokens")
            if (
                meta.get("text_sha256") == text_sha
                and meta.get("tokens_sha256") == hashlib.sha256(tokens.numpy().tobytes()).hexdigest()
            ):
                return tokens
        except (SafetensorError, OSError, ValueError, KeyError):
            pass
        print(f"lit_gpt5: token cache {path} is damaged; rebuilding it")
    if tokenizer.n_vocab > 2**16:
        raise ValueError(f"tokenizer {tokenizer.name} has {tokenizer.n_vocab} ids, more than uint16 holds")
    ids = np.asarray(tokenizer.encode_ordinary(text), dtype=np.uint16)
    tokens = torch.from_numpy(ids)
    meta = {
        "text_sha256": text_sha,
        "tokens_sha256": hashlib.sha256(ids.tobytes()).hexdigest(),
        "tokenizer": tokenizer.name,
    }
    with atomic_path(path) as tmp:
        save_file({"tokens": tokens}, str(tmp), metadata=meta)
    return tokens


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{name} must be a positive integer, got {value!r}")


class TokenWindowDataModule(L.LightningDataModule):
    """Random-window training batches and exhaustive validation windows over any 1-D token tensor.

    This is the piece other projects import: give it your own tokens (or subclass it and override ``load_tokens``).

    Args:
        tokens: 1-D integer tensor of token ids (any tokenizer).
        block_size: T, the window length the model sees.
        batch_size: B, windows per training batch (per device).
        val_batch_size: windows per validation batch; defaults to ``batch_size``.
        val_fraction: share of the tokens held out for validation/test.
        split: ``tail`` (held-out text at the end) or ``interleaved`` (every k-th block held out).
        interleave_blocks: number of blocks for the interleaved split.
        num_workers: DataLoader worker processes. Drawing a batch is one gather, so 0 is usually fastest.
        seed: seed of the window stream (independent of the model's seed).
    """

    def __init__(
        self,
        tokens: torch.Tensor | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split: Split = "tail",
        interleave_blocks: int = 100,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_positive(block_size=block_size, batch_size=batch_size)
        if val_batch_size is not None:
            _check_positive(val_batch_size=val_batch_size)
        if num_workers < 0:
            raise UserError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        self.save_hyperparameters(ignore=["tokens"])
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.train_segments: list[torch.Tensor] = []
        self.val_segments: list[torch.Tensor] = []

    def load_tokens(self) -> torch.Tensor:
        if self.tokens is None:
            raise UserError("TokenWindowDataModule needs a token tensor: TokenWindowDataModule(tokens=...)")
        return self.tokens

    def prepare_data(self) -> None:
        # Load and check everything here: Lightning creates the run's log directory right after prepare_data, and
        # bad input should stop the run before it leaves an empty one behind.
        self._split(self.load_tokens())

    def setup(self, stage: str | None = None) -> None:
        if not self.train_segments:
            self.train_segments, self.val_segments = self._split(self.load_tokens())

    def _split(self, tokens: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if len(tokens) < 2 * (self.block_size + 1):
            raise UserError(
                f"the text has {len(tokens)} tokens after cleaning, too few to train on windows of "
                f"block_size + 1 = {self.block_size + 1} tokens and hold some out; use a longer text or a smaller "
                "--data.block_size"
            )
        hp = self.hparams
        train, held_out = split_tokens(tokens, hp.val_fraction, hp.split, hp.interleave_blocks)
        if max(len(s) for s in train) < self.block_size + 1:
            raise UserError(
                f"no training block of the {hp.split} split holds a window of block_size + 1 = {self.block_size + 1} "
                f"tokens; use fewer --data.interleave_blocks or a smaller --data.block_size"
            )
        return train, held_out

    def train_dataset(self, start_batch: int = 0) -> RandomWindowDataset:
        rank, world_size, _ = trainer_position(self.trainer)
        return RandomWindowDataset(
            self.train_segments, self.block_size, self.batch_size, self.hparams.seed, rank, world_size, start_batch
        )

    def train_dataloader(self) -> DataLoader:
        _, _, start = trainer_position(self.trainer)
        return batch_loader(self.train_dataset(start), self.num_workers)

    def val_dataloader(self) -> DataLoader:
        rank, world_size, _ = trainer_position(self.trainer)
        windows = ValidationWindows(self.val_segments, self.block_size, self.val_batch_size, rank, world_size)
        return batch_loader(windows, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()


class GutenbergDataModule(TokenWindowDataModule):
    """A Project Gutenberg book (default: Gulliver's Travels, #829) as random training windows.

    The book comes from ``text_path`` (a local file), ``url`` (http(s):// or file://), or Project Gutenberg by
    ``book_id``, cached under ``cache_dir`` (default ``$LIT_GPT5_CACHE`` or ``~/.cache/lit_gpt5``) and tokenized
    once with the GPT-2 BPE. Downloading and tokenizing happen in ``prepare_data``; ``setup`` reads the cache.
    """

    def __init__(
        self,
        book_id: int = 829,
        url: str | None = None,
        text_path: str | None = None,
        cache_dir: str | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        val_fraction: float = 0.1,
        split: Split = "tail",
        interleave_blocks: int = 100,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            None, block_size, batch_size, val_batch_size, val_fraction, split, interleave_blocks, num_workers, seed
        )
        self.book_id, self.url, self.text_path, self.cache_dir = book_id, url, text_path, cache_dir

    def load_tokens(self) -> torch.Tensor:
        from lit_gpt5.gutenberg import load_book

        book = load_book(self.book_id, self.url, self.text_path, self.cache_dir)
        return tokenize_cached(book.text, book.cache_dir)
