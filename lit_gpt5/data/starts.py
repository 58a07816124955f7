"""Where the windows of a training batch start (``--data.sampling``): random windows, or epochs of non-overlapping
windows.

``random`` (Model 5's choice, as in nanoGPT): every batch draws B start positions uniformly from all valid starts,
independently of every other batch. Some text is seen many times and some never, and there are no epochs.
``shuffled``: the training text cut into non-overlapping windows, each used exactly once per epoch, in a seeded
random order (sampling without replacement; a new order every epoch). ``sequential``: the same windows in book
order, epoch after epoch: what a plain ``DataLoader(shuffle=False)`` over the windows gives.

Every ``WindowStarts`` maps a global batch index to start positions by a pure function of ``(seed, index)``, which is
what keeps the stream rank-distinct and exactly resumable (see ``lit_gpt5.data.streams``). (A "sampler" in this
package is the ``TextSampler`` callback, which samples text from the model; these choose windows of the data.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from lit_gpt5.errors import UserError

Sampling = Literal["random", "shuffled", "sequential"]
SAMPLINGS = ("random", "shuffled", "sequential")


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


class WindowStarts:
    """Start positions (into the concatenated segments) of the ``batch_size`` windows of a global batch.

    A window holds ``block_size + 1`` tokens and never crosses the end of its segment.
    """

    def __init__(self, lengths: Sequence[int], block_size: int, batch_size: int, seed: int = 0) -> None:
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.seg_offsets = torch.cumsum(self.lengths, 0) - self.lengths

    def starts(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def target_tokens(self) -> int:
        """Training tokens that can be a target: all but the first token of each segment."""
        return int((self.lengths - 1).clamp(min=0).sum())


class RandomStarts(WindowStarts):
    """Uniform over every valid start, drawn afresh for each batch from a generator seeded with (seed, index)."""

    def __init__(self, lengths: Sequence[int], block_size: int, batch_size: int, seed: int = 0) -> None:
        super().__init__(lengths, block_size, batch_size, seed)
        # A segment of length L has L - block_size valid starts (the window holds block_size + 1 tokens).
        counts = (self.lengths - block_size).clamp(min=0)
        self.num_starts = int(counts.sum())
        keep = counts > 0
        self._seg_offsets = self.seg_offsets[keep]
        self._cum_counts = torch.cumsum(counts[keep], 0)
        self._cum_before = self._cum_counts - counts[keep]

    def starts(self, index: int) -> torch.Tensor:
        # Draw u in [0, num_starts) and map it to (segment, offset in segment).
        u = torch.from_numpy(_rng(self.seed, index).integers(0, self.num_starts, size=self.batch_size, dtype=np.int64))
        seg = torch.searchsorted(self._cum_counts, u, right=True)
        return self._seg_offsets[seg] + (u - self._cum_before[seg])

    def start_probability(self) -> torch.Tensor:
        """P(a window starts at position p) for every position of the concatenated segments."""
        prob = torch.zeros(int(self.lengths.sum()), dtype=torch.float64)
        for offset, length in zip(self.seg_offsets.tolist(), self.lengths.tolist(), strict=True):
            if length > self.block_size:
                prob[offset : offset + length - self.block_size] = 1.0 / self.num_starts
        return prob


class EpochStarts(WindowStarts):
    """Non-overlapping windows, each exactly once per epoch; ``shuffle`` orders each epoch by a seeded permutation.

    Window ``w`` of the run is window ``w % W`` of epoch ``w // W`` (W windows per epoch), so a batch may straddle
    two epochs, like a DataLoader with ``drop_last=False`` run over many epochs. With ``random_offset`` every epoch
    moves the window boundaries by a random 0..block_size-1 tokens, so no token is always a window's first (which
    is never a target); each segment then keeps the windows that fit at any offset.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        block_size: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        random_offset: bool = False,
    ) -> None:
        super().__init__(lengths, block_size, batch_size, seed)
        self.shuffle, self.random_offset = shuffle, random_offset
        # Windows of segment length L at offset o: starts o, o + T, ... with start + T + 1 <= L.
        reach = self.lengths - (block_size if random_offset else 1)
        self.per_segment = (reach // block_size).clamp(min=0)
        self.windows_per_epoch = int(self.per_segment.sum())
        self._base = torch.cat(
            [
                offset + torch.arange(int(n), dtype=torch.long) * block_size
                for offset, n in zip(self.seg_offsets.tolist(), self.per_segment.tolist(), strict=True)
            ]
            or [torch.empty(0, dtype=torch.long)]
        )
        self._epoch: tuple[int, torch.Tensor] | None = None

    def epoch_starts(self, epoch: int) -> torch.Tensor:
        """The start positions of epoch ``epoch``'s windows, in the order they are trained on."""
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        rng = _rng(self.seed, epoch)
        starts = self._base
        if self.random_offset:
            starts = starts + int(rng.integers(0, self.block_size))
        if self.shuffle:
            starts = starts[torch.from_numpy(rng.permutation(len(starts)))]
        self._epoch = (epoch, starts)
        return starts

    def starts(self, index: int) -> torch.Tensor:
        w = index * self.batch_size + torch.arange(self.batch_size)
        epochs, k = w // self.windows_per_epoch, w % self.windows_per_epoch
        out = torch.empty(self.batch_size, dtype=torch.long)
        for epoch in torch.unique(epochs).tolist():
            sel = epochs == epoch
            out[sel] = self.epoch_starts(epoch)[k[sel]]
        return out


class WeightedRandomStarts(WindowStarts):
    """Random windows drawn from a mixture of sources: each window's source chosen with probability proportional to
    its weight, then a uniform start among that source's valid starts (``RandomStarts`` within the source). A pure
    function of (seed, index), as all window starts are."""

    def __init__(
        self,
        lengths: Sequence[int],
        block_size: int,
        batch_size: int,
        seed: int,
        segment_sources: Sequence[str],
        weights: dict[str, float],
    ) -> None:
        super().__init__(lengths, block_size, batch_size, seed)
        unknown = sorted(set(weights) - set(segment_sources))
        if unknown or any(not w >= 0 for w in weights.values()):
            raise UserError(
                f"--data.source_weights: unknown source(s) {', '.join(unknown)} or a negative weight; the sources "
                f"are {', '.join(sorted(set(segment_sources)))}"
            )
        counts = (self.lengths - block_size).clamp(min=0)
        self.sources = [s for s in dict.fromkeys(segment_sources) if weights.get(s, 0) > 0]
        if not self.sources:
            raise UserError("--data.source_weights gives no source a positive weight")
        probs = torch.tensor([float(weights[s]) for s in self.sources], dtype=torch.float64)
        self.probs = (probs / probs.sum()).numpy()
        self._within: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for source in self.sources:
            keep = torch.tensor([s == source for s in segment_sources]) & (counts > 0)
            if not keep.any():
                raise UserError(f"source {source!r} has no segment long enough for a window of {block_size + 1} tokens")
            cum = torch.cumsum(counts[keep], 0)
            self._within.append((self.seg_offsets[keep], cum, cum - counts[keep]))

    def starts(self, index: int) -> torch.Tensor:
        rng = _rng(self.seed, index)
        which = rng.choice(len(self.sources), size=self.batch_size, p=self.probs)
        out = torch.empty(self.batch_size, dtype=torch.long)
        for k, source in enumerate(which.tolist()):
            offsets, cum, before = self._within[source]
            u = int(rng.integers(0, int(cum[-1])))
            seg = int(torch.searchsorted(cum, torch.tensor(u), right=True))
            out[k] = offsets[seg] + (u - before[seg])
        return out


def make_starts(
    sampling: str,
    lengths: Sequence[int],
    block_size: int,
    batch_size: int,
    seed: int = 0,
    random_offset: bool = False,
) -> WindowStarts:
    """The window starts of the sampling named ``sampling``; a clear error when the text holds no window."""
    if sampling not in SAMPLINGS:
        raise UserError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if sampling == "random":
        starts: WindowStarts = RandomStarts(lengths, block_size, batch_size, seed)
        empty = starts.num_starts == 0
    else:
        starts = EpochStarts(lengths, block_size, batch_size, seed, sampling == "shuffled", random_offset)
        empty = starts.windows_per_epoch == 0
    if empty:
        longest = max(lengths, default=0)
        raise UserError(
            f"the training text has {longest} tokens in its longest segment, too few for one "
            f"window of block_size + 1 = {block_size + 1}; use a longer text or a smaller --data.block_size"
        )
    return starts


def window_targets(starts: torch.Tensor, block_size: int) -> torch.Tensor:
    """Positions of the target tokens of windows starting at ``starts``: start + 1 ... start + block_size."""
    return (starts[:, None] + torch.arange(1, block_size + 1)).flatten()


def expected_random_coverage(starts: RandomStarts, windows: Sequence[int] | np.ndarray) -> np.ndarray:
    """Expected share of target tokens seen at least once after ``n`` uniformly random windows, for each n given.

    Target position t is hit by a window starting in [t - T, t - 1]; with q_t the probability that one random window
    does so, P(t seen after n windows) = 1 - (1 - q_t)^n, and the expected coverage is the mean over targets.
    """
    prob = starts.start_probability()
    # q_t = sum of start probabilities over the T starts before t: a sliding window sum.
    cumulative = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(prob, 0)])
    t = torch.arange(len(prob))
    q = cumulative[t] - cumulative[(t - starts.block_size).clamp(min=0)]
    is_target = torch.ones(len(prob), dtype=torch.bool)
    is_target[starts.seg_offsets[starts.lengths > 0]] = False  # a segment's first token is never a target
    q = q[is_target].numpy()
    log_miss = np.log1p(-np.minimum(q, 1.0 - 1e-15))
    return np.array([1.0 - np.exp(n * log_miss).mean() for n in np.asarray(windows, dtype=np.float64)])
