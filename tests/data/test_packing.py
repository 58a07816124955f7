"""Packing: several records per row, attention kept within each, the same loss and gradients as padded batches."""

from __future__ import annotations

import numpy as np
import torch

from lit_gpt5.data.batching import SFTBatches, collate, pack_first_fit
from lit_gpt5.data.instructions import SFTDataset
from lit_gpt5.data.preferences import PreferenceDataset, collate_pairs
from lit_gpt5.model.gpt import GPT, GPTConfig
from lit_gpt5.model.tokenizer import get_tokenizer
from lit_gpt5.tuning.dpo import sequence_logps

TOK = get_tokenizer()
CFG = GPTConfig(block_size=128, n_layer=2, n_head=2, n_embd=16)
WORDS = [1, 12, 3, 20, 7, 2, 15, 5]


def records(n: int = 8) -> list[dict]:
    return [{"instruction": f"Task {i}: say it.", "output": "word " * WORDS[i % len(WORDS)]} for i in range(n)]


def test_first_fit_packs_every_example_once_within_the_width():
    lengths = np.array([5, 9, 3, 7, 7, 2, 10, 1])
    rows = pack_first_fit(np.arange(8), lengths, 10)
    assert sorted(i for row in rows for i in row) == list(range(8))
    assert all(lengths[row].sum() <= 10 for row in rows)
    assert len(rows) == 5  # 44 positions in rows of 10: first-fit decreasing needs 5


def grads_and_loss(model, batch):
    model.zero_grad()
    x, y, *packed = batch
    positions, segments = packed or (None, None)
    total, count = model.loss_sum(x, y, 7, input_pos=positions, segments=segments)
    (total / count).backward()
    return total.detach(), count, [p.grad.clone() for p in model.parameters()]


def test_a_packed_batch_gives_the_padded_batchs_loss_and_gradients():
    torch.manual_seed(0)
    model = GPT(CFG)
    ds = SFTDataset(records(), TOK, 64, "plain")
    items = [ds[i] for i in range(len(ds))]
    padded = grads_and_loss(model, collate(items, ds.eot))
    lengths = np.array(ds.packed_lengths())
    rows = pack_first_fit(np.arange(len(ds)), lengths, 64)
    assert len(rows) < len(ds)  # several examples share rows
    packed_batch = ds.collate_packed([[items[i] for i in row] for row in rows], 64)
    packed = grads_and_loss(model, packed_batch)
    assert packed[1] == padded[1]  # the same supervised tokens
    torch.testing.assert_close(packed[0], padded[0], rtol=1e-5, atol=1e-4)
    for a, b in zip(packed[2], padded[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    x, y, positions, segments = packed_batch
    assert (positions[segments == 0] == torch.arange(int((segments == 0).sum()))).all()  # restart per example
    assert ((segments == -1) == (x == ds.eot) & (y == -100)).sum() > 0  # the padding, at the end


def test_packed_pairs_give_the_same_sequence_log_probabilities():
    torch.manual_seed(0)
    model = GPT(CFG)
    pairs = [{"prompt": f"Q{i}?", "chosen": "yes " * (i + 1), "rejected": "no " * (2 * i + 1)} for i in range(6)]
    ds = PreferenceDataset(pairs, TOK, 64)
    items = [ds[i] for i in range(len(ds))]
    x, y, index = collate_pairs(items, ds.eot)
    padded = sequence_logps(model, x, y, 0)
    rows = pack_first_fit(np.arange(len(ds)), np.array(ds.packed_lengths()), 128)
    order = [i for row in rows for i in row]
    px, py, positions, segments, pindex = ds.collate_packed([[items[i] for i in row] for row in rows], 128)
    assert pindex.tolist() == order
    packed = sequence_logps(model, px, py, 5, positions, segments)
    n = len(order)
    expected = torch.cat([padded[:n][order], padded[n:][order]])  # the packed batch's own pair order
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-4)


def test_the_packed_stream_covers_every_example_each_epoch_and_is_index_addressed():
    ds = SFTDataset(records(40), TOK, 64, "plain")
    stream = SFTBatches(ds, batch_size=2, seed=3, pack_width=64)
    first_epoch = stream.epoch_batches(0)
    assert sorted(i for batch in first_epoch for row in batch for i in row) == list(range(40))
    again = SFTBatches(ds, batch_size=2, seed=3, pack_width=64, start_batch=len(first_epoch) + 1)
    batch = next(iter(again))  # a resumed stream: the second batch of epoch 1, computed without iterating to it
    assert all(torch.equal(a, b) for a, b in zip(batch, stream.global_batch(len(first_epoch) + 1), strict=True))
