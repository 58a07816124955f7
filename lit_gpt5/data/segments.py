"""Token segments: the training (or held-out) parts of documents, one after the other, and windows read from them.

A window never crosses a segment's end. Global positions count through the segments in order (what the window starts of
``lit_gpt5.data.starts`` draw), so the same positions give the same windows whether the tokens sit in memory
(``TensorSegments``) or in a token store on disk (``lit_gpt5.data.store.StoreSegments``, read with ``pread``: a
process's memory does not grow with the corpus).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch


def split_bounds(
    n: int, val_fraction: float, split: str, blocks: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train ranges, held-out ranges) of a document of ``n`` tokens, as ``[start, end)`` pairs: ``tail`` holds out
    the last ``val_fraction``; ``interleaved`` cuts it into ``blocks`` and holds out every (1/val_fraction)-th block.
    The one definition of the split, for tensors in memory and documents in a store alike."""
    if split == "tail":
        cut = n - max(1, round(n * val_fraction))
        return [(0, cut)], [(cut, n)]
    bounds = [round(i * n / blocks) for i in range(blocks + 1)]
    train, held_out = [], []
    for i in range(blocks):
        # Block i is held out when it crosses a multiple of 1/val_fraction: every 10th block for 0.1.
        is_val = int((i + 1) * val_fraction) > int(i * val_fraction)
        (held_out if is_val else train).append((bounds[i], bounds[i + 1]))
    return train, held_out


class Segments:
    """Segments of tokens with their lengths; ``gather`` reads windows at global positions."""

    lengths: torch.Tensor  # int64, one per segment

    def __len__(self) -> int:
        return len(self.lengths)

    @cached_property
    def offsets(self) -> torch.Tensor:
        """Global position of each segment's first token."""
        return torch.cumsum(self.lengths, 0) - self.lengths

    def read(self, segment: int, start: int, length: int) -> torch.Tensor:
        """Tokens ``[start, start + length)`` of a segment, as int64."""
        raise NotImplementedError

    def gather(self, starts: torch.Tensor, width: int) -> torch.Tensor:
        """(len(starts), width) int64 windows at global positions; each lies within one segment."""
        offsets = self.offsets
        seg = torch.searchsorted(offsets, starts, right=True) - 1
        return torch.stack([self.read(int(s), int(p - offsets[s]), width) for s, p in zip(seg, starts, strict=True)])


class TensorSegments(Segments):
    """Segments held in memory (int32: indexes everywhere, half the memory of int64), concatenated once."""

    def __init__(self, segments: Sequence[torch.Tensor]) -> None:
        segments = [s.to(torch.int32) for s in segments]
        self.lengths = torch.tensor([len(s) for s in segments], dtype=torch.long)
        self.tokens = torch.cat(segments) if segments else torch.empty(0, dtype=torch.int32)
        self._arange: dict[int, torch.Tensor] = {}

    def read(self, segment: int, start: int, length: int) -> torch.Tensor:
        begin = int(self.offsets[segment]) + start
        return self.tokens[begin : begin + length].long()

    def gather(self, starts: torch.Tensor, width: int) -> torch.Tensor:
        # One index tensor, one gather: the whole batch at once (windows never cross a segment, so no check needed).
        arange = self._arange.setdefault(width, torch.arange(width))
        return self.tokens[starts[:, None] + arange].long()


def segment_windows(segments: Segments, block_size: int) -> list[tuple[int, int]]:
    """(segment, start) of the non-overlapping validation windows of every segment: each window holds up to
    ``block_size + 1`` tokens and makes every token but a segment's first a target exactly once."""
    return [(s, i) for s, n in enumerate(segments.lengths.tolist()) for i in range(0, n - 1, block_size)]


def window_rows(segments: Segments, windows: Sequence[tuple[int, int]], block_size: int) -> tuple[torch.Tensor, ...]:
    """``(x, y)`` of validation windows: a segment's last window is shorter, its padding targets -100."""
    from lit_gpt5.model.loss import IGNORE_INDEX

    x = torch.zeros((len(windows), block_size), dtype=torch.long)
    y = torch.full((len(windows), block_size), IGNORE_INDEX, dtype=torch.long)
    lengths = segments.lengths.tolist()
    for row, (s, start) in enumerate(windows):
        chunk = segments.read(s, start, min(block_size + 1, lengths[s] - start))
        x[row, : len(chunk) - 1] = chunk[:-1]
        y[row, : len(chunk) - 1] = chunk[1:]
    return x, y


def as_int64(values: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(values.astype(np.int64, copy=False))
