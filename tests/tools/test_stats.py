"""The studies' intervals: Student's t at few seeds, paired differences."""

import math

import pytest

from lit_gpt5.tools.stats import mean_interval, paired_differences, t975


def test_t_quantiles_and_intervals():
    assert t975(2) == pytest.approx(4.303) and t975(1000) == pytest.approx(1.962, abs=1e-3)
    interval = mean_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, sem 1/sqrt(3)
    assert interval.mean == 2.0 and interval.half_width == pytest.approx(4.303 / math.sqrt(3))
    assert not interval.excludes_zero() and mean_interval([1.0, 1.1, 0.9, 1.05]).excludes_zero()
    assert math.isinf(mean_interval([5.0]).half_width)


def test_paired_differences_use_the_seeds_both_have():
    diffs, interval = paired_differences({0: 5.0, 1: 5.2, 2: 5.1}, {0: 4.9, 1: 5.0, 3: 9.0})
    assert diffs == pytest.approx([0.1, 0.2]) and interval.n == 2
