import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from lit_gpt5.data import RandomWindowDataset, TokenWindowDataModule, split_tokens, validation_windows
from lit_gpt5.errors import UserError
from lit_gpt5.model.loss import IGNORE_INDEX

# Tokens equal to their own positions: a window's values say exactly where in the text it was cut from.
POSITIONS = torch.arange(10_000)


def take(dataset, n):
    return list(itertools.islice(iter(dataset), n))


def test_window_shapes_shift_and_bounds():
    ds = RandomWindowDataset(POSITIONS, block_size=64, batch_size=8)
    for x, y in take(ds, 50):
        assert x.shape == y.shape == (8, 64)
        assert x.dtype == y.dtype == torch.long
        assert torch.equal(y[:, :-1], x[:, 1:])  # y is x shifted by one token
        assert torch.equal(y[:, -1], x[:, -1] + 1)
        assert torch.equal(x, x[:, :1] + torch.arange(64))  # contiguous windows
        assert x.min() >= 0 and y.max() < len(POSITIONS)


def test_every_start_is_reachable_and_uniform():
    ds = RandomWindowDataset(torch.arange(40), block_size=8, batch_size=512)
    starts = torch.cat([x[:, 0] for x, _ in take(ds, 20)])
    counts = torch.bincount(starts, minlength=32)
    assert starts.max() == 31  # 40 tokens, windows of 8 + 1: starts 0..31
    assert (counts > 0).all()
    assert counts.float().std() / counts.float().mean() < 0.1


def test_deterministic_and_resumable():
    a = take(RandomWindowDataset(POSITIONS, 32, 4, seed=7), 30)
    b = take(RandomWindowDataset(POSITIONS, 32, 4, seed=7), 30)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b, strict=True))
    resumed = take(RandomWindowDataset(POSITIONS, 32, 4, seed=7, start_batch=17), 13)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a[17:], resumed, strict=True))
    other_seed = take(RandomWindowDataset(POSITIONS, 32, 4, seed=8), 30)
    assert not all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, other_seed, strict=True))


def test_ranks_draw_distinct_batches_that_add_up_to_one_stream():
    single = take(RandomWindowDataset(POSITIONS, 32, 4, seed=3), 40)
    ranks = [take(RandomWindowDataset(POSITIONS, 32, 4, seed=3, rank=r, world_size=4), 10) for r in range(4)]
    for r in range(4):
        for i in range(10):
            assert torch.equal(ranks[r][i][0], single[i * 4 + r][0])
    starts = [tuple(x[:, 0].tolist()) for rank in ranks for x, _ in rank]
    assert len(set(starts)) == len(starts)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_workers_split_the_stream_without_repeats(num_workers):
    ds = RandomWindowDataset(POSITIONS, 32, 4, seed=5)
    reference = take(ds, 12)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers)
    got = take(loader, 12)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(reference, got, strict=True))
    assert len({tuple(x[:, 0].tolist()) for x, _ in got}) == 12


def test_tail_split_never_leaks():
    train, held_out = split_tokens(POSITIONS, 0.1, "tail")
    assert [len(train[0]), len(held_out[0])] == [9000, 1000]
    ds = RandomWindowDataset(train, 100, 64)
    seen_max = max(int(y.max()) for _, y in take(ds, 100))
    assert 8900 < seen_max <= 8999  # windows reach the end of the training text, never a held-out token


def test_interleaved_split_never_leaks_or_spans_blocks():
    train, held_out = split_tokens(POSITIONS, 0.1, "interleaved", blocks=50)
    assert len(train) == 45 and len(held_out) == 5
    held = torch.cat(held_out)
    assert len(held) == 1000
    assert torch.equal(torch.cat(held_out[:1]), torch.arange(1800, 2000))  # block 9 of 0..49: every 10th
    ds = RandomWindowDataset(train, 150, 64)
    held_set = set(held.tolist())
    for x, y in take(ds, 60):
        assert torch.equal(y - x, torch.ones_like(x))
        assert torch.equal(x, x[:, :1] + torch.arange(150))  # no window jumps over a held-out block
        assert not held_set.intersection(y.flatten().tolist())


def test_split_errors():
    with pytest.raises(UserError, match="val_fraction"):
        split_tokens(POSITIONS, 1.5)
    with pytest.raises(UserError, match="split must be"):
        split_tokens(POSITIONS, 0.1, "random")
    with pytest.raises(UserError, match="too few for one window"):
        RandomWindowDataset(torch.arange(100), block_size=100, batch_size=2)
    with pytest.raises(UserError, match="batch_size must be a positive integer"):
        RandomWindowDataset(POSITIONS, block_size=10, batch_size=0)


@pytest.mark.parametrize("world_size", [1, 3])
def test_validation_covers_every_target_once(world_size):
    segments = [torch.arange(0, 1000), torch.arange(5000, 5301), torch.arange(9000, 9002)]
    targets = []
    for rank in range(world_size):
        val = validation_windows(segments, block_size=64, batch_size=5, rank=rank, world_size=world_size)
        batches = list(val)
        assert len(batches) == val.num_batches
        for x, y in batches:
            assert x.shape == y.shape and x.shape[1] == 64
            supervised = y != IGNORE_INDEX
            assert torch.equal(y[supervised], (x + 1)[supervised])
            targets += y[supervised].tolist()
    expected = [t for seg in segments for t in seg[1:].tolist()]
    assert sorted(targets) == expected  # each target once: no repeats across ranks, nothing missing


def test_token_window_datamodule_with_any_tokens():
    dm = TokenWindowDataModule(POSITIONS, block_size=16, batch_size=4, val_fraction=0.2, seed=1)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 16) and int(y.max()) < 8000
    val = list(dm.val_dataloader())
    assert sum(int((y != IGNORE_INDEX).sum()) for _, y in val) == 1999
    assert len(list(dm.test_dataloader())) == len(val)
