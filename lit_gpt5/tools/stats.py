"""The statistics the studies report: a mean with its 95% interval over seeds, and paired differences.

Seeds are few (3 to 5), so intervals use Student's t, not the normal approximation: with 3 seeds the 95% interval
is 4.3 standard errors wide on each side, not 1.96. No SciPy: the t quantiles are tabulated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, for df = 1 .. 30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t975(df: int) -> float:
    """t_{0.975, df}: 30+ degrees of freedom use the normal's 1.96 plus Cornish-Fisher's first correction."""
    if df < 1:
        raise ValueError(f"an interval needs at least 2 values (df >= 1), got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% confidence interval (Student's t over ``n`` values)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.half_width:.3f}"


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean of ``values`` with the half-width of its 95% interval; one value has an infinite interval."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values")
    if len(values) == 1:
        return Interval(values[0], math.inf, 1)
    sem = statistics.stdev(values) / math.sqrt(len(values))
    return Interval(statistics.fmean(values), t975(len(values) - 1) * sem, len(values))


def paired_differences(a: dict, b: dict) -> tuple[list[float], Interval]:
    """``a[k] - b[k]`` for the keys (seeds) both have, and their mean with a 95% interval: a paired comparison,
    which removes what the two runs of one seed share."""
    keys = sorted(set(a) & set(b))
    diffs = [a[k] - b[k] for k in keys]
    return diffs, mean_interval(diffs)
