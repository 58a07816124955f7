"""Batches of examples of different lengths: padding by position, shuffled epochs bucketed by length, and
evaluation batches. Used for instruction records and preference pairs alike."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_gpt5.data.streams import EvalBatches, IndexedBatchStream, check_positive
from lit_gpt5.errors import UserError
from lit_gpt5.model.loss import IGNORE_INDEX


def pad_rows(
    rows: Sequence[tuple[torch.Tensor, torch.Tensor]], pad_id: int = 50256
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, labels)`` rows right-padded to the longest and shifted: ``x`` = ids[:, :-1], ``y`` =
    labels[:, 1:]. The one padding of the package: instruction examples and both sides of preference pairs.

    Padding is known by position (past each row's length), never by token value: GPT-2 pads with the id of
    ``<|endoftext|>``, which is also the last, supervised token of every response. Padded targets are -100; padded
    inputs come after every real token, so causal attention never lets a real token see them.
    """
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for row, (row_ids, row_labels) in enumerate(rows):
        ids[row, : len(row_ids)] = row_ids
        labels[row, : len(row_ids)] = row_labels
    return ids[:, :-1], labels[:, 1:]


def collate(examples: Sequence[dict[str, torch.Tensor]], pad_id: int = 50256) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch ``(x, y)`` of ``{"input_ids", "labels"}`` examples (``pad_rows``)."""
    return pad_rows([(e["input_ids"], e["labels"]) for e in examples], pad_id)


class SFTBatches(IndexedBatchStream):
    """Endless shuffled training batches of a ``RecordDataset`` (instruction examples or preference pairs), each
    batch collated (by ``collate_fn``, default the dataset's own ``collate``).

    Epoch ``e`` is a permutation seeded with (seed, e). With ``bucket``, the permutation is cut into chunks of
    ``64 * batch_size`` examples, each chunk sorted by length and cut into batches, and the batches shuffled again:
    batches hold examples of similar length (far less padding) while the order stays random. With ``pack_width``,
    each chunk is packed instead: examples placed first-fit, longest first, into rows of ``pack_width`` positions,
    ``batch_size`` rows a batch (``pack``: no padding between examples, attention kept within each). The stream follows
    the index-addressed contract of ``lit_gpt5.data.streams``, so ``start_batch`` resumes it exactly.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int = 0,
        bucket: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
        collate_fn=None,
        lengths: Sequence[int] | None = None,
        pack_width: int | None = None,
        global_start: int | None = None,
    ) -> None:
        super().__init__(seed, rank, world_size, start_batch, global_start)
        check_positive(batch_size=batch_size)
        if len(dataset) == 0:
            raise UserError("no training example is left after tokenizing and truncating; raise --data.max_length")
        self.dataset, self.batch_size, self.bucket, self.pack_width = dataset, batch_size, bucket, pack_width
        packed = partial(dataset.collate_packed, width=pack_width) if pack_width else None
        self.collate_fn = collate_fn or packed or dataset.collate
        if pack_width:
            self.lengths = np.array(dataset.packed_lengths())
            if self.lengths.max() > pack_width:
                raise UserError(f"an example needs {self.lengths.max()} positions, more than a row's {pack_width}")
        else:
            self.lengths = np.array(lengths if lengths is not None else dataset.lengths())
        self.batches_per_epoch = -(-len(dataset) // batch_size)
        self._epoch: tuple[int, list] | None = None
        self._epoch_starts = [0]  # global index of each packed epoch's first batch (their counts vary)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
        order = rng.permutation(len(self.dataset))
        if self.pack_width:
            batches = []
            chunk = 64 * self.batch_size
            for i in range(0, len(order), chunk):
                rows = pack_first_fit(order[i : i + chunk], self.lengths, self.pack_width)
                batches += [rows[j : j + self.batch_size] for j in range(0, len(rows), self.batch_size)]
            batches = [batches[k] for k in rng.permutation(len(batches))]
        elif not self.bucket:
            batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        else:
            chunk = 64 * self.batch_size
            batches = []
            for i in range(0, len(order), chunk):
                part = order[i : i + chunk]
                part = part[np.argsort(self.lengths[part], kind="stable")]
                batches += [part[j : j + self.batch_size] for j in range(0, len(part), self.batch_size)]
            batches = [batches[k] for k in rng.permutation(len(batches))]
        self._epoch = (epoch, batches)
        return batches

    def global_batch(self, index: int):
        if self.pack_width:
            epoch, k = self._packed_position(index)
            rows = self.epoch_batches(epoch)[k]
            return self.collate_fn([[self.dataset[int(i)] for i in row] for row in rows])
        epoch, k = divmod(index, self.batches_per_epoch)
        return collated(self.dataset, self.collate_fn, self.epoch_batches(epoch)[k])

    def _packed_position(self, index: int) -> tuple[int, int]:
        """(epoch, batch within it) of global batch ``index`` when epochs pack into different numbers of batches."""
        while self._epoch_starts[-1] <= index:
            epoch = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + len(self.epoch_batches(epoch)))
        epoch = int(np.searchsorted(self._epoch_starts, index, side="right")) - 1
        return epoch, index - self._epoch_starts[epoch]


def pack_first_fit(indices: np.ndarray, lengths: np.ndarray, width: int) -> list[list[int]]:
    """Rows of example indices whose lengths sum to at most ``width``: longest first, each into the first row with
    room (first-fit decreasing), rows in the order they were opened."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in indices[np.argsort(-lengths[indices], kind="stable")]:
        need = int(lengths[i])
        for r, free in enumerate(room):
            if need <= free:
                rows[r].append(int(i))
                room[r] -= need
                break
        else:
            rows.append([int(i)])
            room.append(width - need)
    return rows


def pack_rows(
    rows: Sequence[Sequence[tuple[torch.Tensor, torch.Tensor]]], width: int, pad_id: int = 50256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Packed ``(x, y, positions, segments)`` of rows of ``(input_ids, labels)`` sequences: each sequence shifted as
    ``pad_rows`` shifts one (``x`` its ids but the last, ``y`` its labels but the first), placed one after the other,
    with positions restarting at 0 and a segment number of its own (numbered across the batch, in order); the rest of
    the row is padding (targets -100, segment -1). ``GPT.features`` keeps attention within each segment, so every
    sequence computes exactly what it would alone."""
    x = torch.full((len(rows), width), pad_id, dtype=torch.long)
    y = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    segment = 0
    for r, row in enumerate(rows):
        at = 0
        for ids, labels in row:
            n = len(ids) - 1
            x[r, at : at + n], y[r, at : at + n] = ids[:-1], labels[1:]
            positions[r, at : at + n] = torch.arange(n)
            segments[r, at : at + n] = segment
            at += n
            segment += 1
    return x, y, positions, segments


def collated(dataset: Dataset, collate_fn, indices) -> object:
    """The batch of ``dataset``'s items at ``indices``."""
    return collate_fn([dataset[int(i)] for i in indices])


def eval_batches(
    dataset: Dataset, batch_size: int, rank: int = 0, world_size: int = 1, collate_fn=None, lengths=None
) -> EvalBatches:
    """Every example once, in batches of similar length, split across ranks and workers without repeats."""
    lengths = lengths if lengths is not None else dataset.lengths()
    make_batch = partial(collated, dataset, collate_fn or dataset.collate)
    order = sorted(range(len(dataset)), key=lambda i: lengths[i])
    return EvalBatches.chunked(order, batch_size, make_batch, rank, world_size)
