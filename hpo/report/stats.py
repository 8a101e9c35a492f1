"""Summaries of repeated runs: mean and spread, and Welch's interval for a difference of means.

Student's t quantile is computed here, exactly, from the regularised incomplete beta function, so
the report needs no scipy: Welch's degrees of freedom are not integers, which rules out a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

_EPS = 1e-15
_TINY = 1e-300


@dataclass(frozen=True)
class Sample:
    """Mean and sample standard deviation (n - 1 in the denominator; NaN when n < 2)."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Difference:
    """``a - b`` with a two-sided confidence interval from Welch's t (unequal variances)."""

    diff: float
    low: float
    high: float
    df: float
    level: float


def sample_of(values: Sequence[float]) -> Sample:
    n = len(values)
    if n == 0:
        raise ValueError("sample_of() needs at least one value")
    if all(v == values[0] for v in values):
        # Exactly: fsum(values) / n is off by an ulp for most values, and tied seeds then read
        # as a tiny spread, from which welch_interval made a zero-width "certain" interval.
        return Sample(float(values[0]), 0.0 if n > 1 else math.nan, n)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return Sample(mean, std, n)


def welch_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> Difference | None:
    """The interval for mean(a) - mean(b); None when either side has fewer than two values, or
    neither side varies at all (the seeds tied: a test accuracy moves in steps of 0.01 points),
    since then the variance, and so any interval, is unknown: a zero-width interval would claim
    certainty from two seeds."""
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = sample_of(a), sample_of(b)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    diff = sa.mean - sb.mean
    if va + vb == 0:
        return None
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    half = t_quantile(0.5 + level / 2, df) * math.sqrt(va + vb)
    return Difference(diff, diff - half, diff + half, df, level)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (any real df)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0 (got {df})")
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2))
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on the CDF (monotone, so it cannot miss)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1) (got {p})")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta I_x(a, b), by its continued fraction (Lentz's method),
    evaluated on whichever side of the mean converges fast."""
    if not 0 <= x <= 1:
        raise ValueError(f"x must be in [0, 1] (got {x})")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > _TINY else _TINY)
            c = 1 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")
