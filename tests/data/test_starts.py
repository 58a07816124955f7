"""random, shuffled and sequential windows: shapes, shifts, bounds, exact epochs, ranks, workers, resume, coverage."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lit_gpt5.data import RandomWindowDataset, TokenWindowDataModule, split_tokens
from lit_gpt5.data.starts import EpochStarts, RandomStarts, expected_random_coverage, window_targets

POSITIONS = torch.arange(10_000)  # tokens equal to their positions: a window says where it was cut from


def take(dataset, n):
    return list(itertools.islice(iter(dataset), n))


@pytest.mark.parametrize("sampling", ["random", "shuffled", "sequential"])
def test_shapes_shift_and_bounds(sampling):
    train, held_out = split_tokens(POSITIONS, 0.1, "interleaved", blocks=20)
    ds = RandomWindowDataset(train, 64, 8, sampling=sampling)
    held = set(torch.cat(held_out).tolist())
    for x, y in take(ds, 40):
        assert x.shape == y.shape == (8, 64) and x.dtype == torch.long
        assert torch.equal(y, x + 1)  # shifted by one, and contiguous: no window crosses a held-out block
        assert not held.intersection(y.flatten().tolist())  # no train/test leak


@pytest.mark.parametrize("sampling", ["shuffled", "sequential"])
def test_one_epoch_uses_every_window_exactly_once(sampling):
    segments = [torch.arange(0, 1000), torch.arange(5000, 5301)]  # two books/blocks of different lengths
    ds = RandomWindowDataset(segments, 32, 7, sampling=sampling)
    per_epoch = ds.window_starts.windows_per_epoch
    assert per_epoch == 999 // 32 + 300 // 32
    starts = torch.cat([ds.starts(b) for b in range(-(-per_epoch // 7))])[:per_epoch]
    assert sorted(starts.tolist()) == sorted(ds.window_starts.epoch_starts(0).tolist())
    assert len(set(starts.tolist())) == per_epoch  # every window exactly once
    # Non-overlapping: together the windows' targets cover each segment's tokens once, but its first and its tail.
    targets = window_targets(starts, 32)
    assert len(set(targets.tolist())) == len(targets) == per_epoch * 32
    if sampling == "sequential":
        assert starts.tolist() == sorted(starts.tolist())  # book order
    else:
        assert starts.tolist() != sorted(starts.tolist())
        second = ds.window_starts.epoch_starts(1)
        assert sorted(second.tolist()) == sorted(starts.tolist()) and second.tolist() != starts.tolist()


def test_random_offset_moves_window_boundaries_between_epochs():
    sampler = EpochStarts([1000], 32, 4, seed=3, shuffle=True, random_offset=True)
    offsets = {int(sampler.epoch_starts(e).min()) % 32 for e in range(8)}
    assert len(offsets) > 1
    for e in range(8):
        starts = sampler.epoch_starts(e)
        assert int(starts.max()) + 33 <= 1000 and len(starts) == sampler.windows_per_epoch


@pytest.mark.parametrize("sampling", ["random", "shuffled", "sequential"])
def test_ranks_workers_and_resume_keep_one_stream(sampling):
    single = take(RandomWindowDataset(POSITIONS, 32, 4, seed=3, sampling=sampling), 40)
    ranks = [
        take(RandomWindowDataset(POSITIONS, 32, 4, seed=3, rank=r, world_size=4, sampling=sampling), 10)
        for r in range(4)
    ]
    for r in range(4):
        for i in range(10):
            assert torch.equal(ranks[r][i][0], single[i * 4 + r][0])  # rank-distinct, together the one stream
    resumed = take(RandomWindowDataset(POSITIONS, 32, 4, seed=3, start_batch=17, sampling=sampling), 13)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single[17:30], resumed, strict=True))
    loader = DataLoader(
        RandomWindowDataset(POSITIONS, 32, 4, seed=3, sampling=sampling), batch_size=None, num_workers=2
    )
    assert all(torch.equal(a[0], b[0]) for a, b in zip(single[:12], take(loader, 12), strict=True))


def test_random_is_the_same_stream_as_before_samplers_existed():
    # Model 5's stream: batch b's starts come from PCG64(SeedSequence([seed, b])), uniform over the valid starts.
    ds = RandomWindowDataset(POSITIONS, 32, 4, seed=7)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([7, 5])))
    assert ds.starts(5).tolist() == rng.integers(0, 10_000 - 32, size=4).tolist()


def test_coverage_expectation_matches_a_hand_count():
    # 10 tokens, windows of 2 + 1: starts 0..7 uniformly (8 starts). Target 1 is hit only by start 0 (1/8); targets
    # 2..8 by two starts (2/8); target 9 by start 7 (1/8). After one window: mean of q = (1 + 7*2 + 1)/8/9 = 2/9.
    sampler = RandomStarts([10], 2, 1)
    assert expected_random_coverage(sampler, [1])[0] == pytest.approx(2 / 9)
    # After n windows: 1 - mean((1 - q_t)^n).
    n = 5
    assert expected_random_coverage(sampler, [n])[0] == pytest.approx(1 - (2 * (7 / 8) ** n + 7 * (6 / 8) ** n) / 9)


def test_datamodule_sampling_option_and_bad_names():
    dm = TokenWindowDataModule(POSITIONS, block_size=16, batch_size=4, sampling="sequential")
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    assert x[:, 0].tolist() == [0, 16, 32, 48]  # the classic DataLoader epoch, in book order
    from lit_gpt5.errors import UserError

    with pytest.raises(UserError, match="sampling must be one of random, shuffled, sequential, got 'epochs'"):
        TokenWindowDataModule(POSITIONS, sampling="epochs")


def test_several_documents_are_split_each_and_never_joined_by_a_window():
    books = {"gulliver": torch.arange(0, 3000), "frankenstein": torch.arange(10_000, 12_000)}
    dm = TokenWindowDataModule(books, block_size=50, batch_size=16, val_fraction=0.1)
    dm.setup("fit")
    assert dm.val_set_names == ["gulliver", "frankenstein"]
    assert [len(s) for s in dm.train_segments] == [2700, 1800]  # the held-out part taken per book
    assert [int(s[0][0]) for s in dm.val_sets.values()] == [2700, 11_800]
    for sampling in ("random", "shuffled", "sequential"):
        dm = TokenWindowDataModule(books, block_size=50, batch_size=16, sampling=sampling)
        dm.setup("fit")
        for x, y in take(dm.train_dataloader(), 30):
            assert torch.equal(y, x + 1)  # contiguous: no window runs from one book into the other
    assert len(dm.val_dataloader()) == 2  # one validation loader per book
