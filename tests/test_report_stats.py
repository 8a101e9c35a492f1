"""hpo.report.stats on inputs whose answers are known: tables, closed forms, hand arithmetic."""

from __future__ import annotations

import math

import pytest

from hpo.report.stats import Sample, betainc, sample_of, t_cdf, t_quantile, welch_interval

# Two-sided 95% critical values of Student's t (any printed t table, to its 3 decimals;
# the full digits are scipy.stats.t.ppf(0.975, df)).
T_975 = {
    1: 12.706204736174694,
    2: 4.302652729749462,
    3: 3.1824463052837078,
    4: 2.7764451051977934,
    5: 2.5705818356363146,
    10: 2.228138851986274,
    30: 2.0422724563012378,
    1000: 1.9623390808264083,
}


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_the_t_table(df: int) -> None:
    assert t_quantile(0.975, df) == pytest.approx(T_975[df], rel=1e-10)


def test_t_quantile_for_non_integer_degrees_of_freedom() -> None:
    # Welch's df are fractional; references from scipy.stats.t.ppf.
    assert t_quantile(0.975, 7.5) == pytest.approx(2.333039626864974, rel=1e-10)
    assert t_quantile(0.975, 50 / 17) == pytest.approx(3.218758614532882, rel=1e-10)


def test_t_quantile_is_symmetric_and_tends_to_the_normal() -> None:
    assert t_quantile(0.025, 4) == pytest.approx(-T_975[4], rel=1e-10)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, rel=1e-10)
    assert t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-12)


def test_t_cdf_closed_forms() -> None:
    # df = 1 is the Cauchy distribution: F(t) = 1/2 + atan(t)/pi.
    for t in (-3.0, -0.5, 0.0, 1.0, 7.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
    # df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
    for t in (-2.0, 0.3, 4.0):
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)


def test_incomplete_beta_equals_the_binomial_sum() -> None:
    # I_x(a, n - a + 1) = P(Binomial(n, x) >= a): I_0.4(2, 3) = sum_{j=2..4} C(4,j) .4^j .6^(4-j).
    expected = 6 * 0.4**2 * 0.6**2 + 4 * 0.4**3 * 0.6 + 0.4**4
    assert betainc(2, 3, 0.4) == pytest.approx(expected, abs=1e-14)
    assert betainc(2, 3, 0.9) == pytest.approx(1 - 0.1**4 - 4 * 0.9 * 0.1**3, abs=1e-14)
    assert (betainc(3, 5, 0.0), betainc(3, 5, 1.0)) == (0.0, 1.0)


def test_sample_of_mean_and_sample_std() -> None:
    s = sample_of([2, 4, 4, 4, 5, 5, 7, 9])
    assert (s.mean, s.n) == (5.0, 8)
    assert s.std == pytest.approx(math.sqrt(32 / 7))  # squares sum to 32; n - 1 = 7
    one = sample_of([0.98])
    assert one.mean == 0.98 and math.isnan(one.std)


def test_welch_interval_computed_by_hand_for_test_accuracies() -> None:
    best, baseline = [0.980, 0.982, 0.984], [0.975, 0.977, 0.976]
    # means 0.982 and 0.976; variances 4e-6 and 1e-6; se^2 = 4e-6/3 + 1e-6/3 = 5e-6/3;
    # df = (5/3)^2 / ((4/3)^2 / 2 + (1/3)^2 / 2) = (25/9) / (17/18) = 50/17;
    # half width = t(0.975, 50/17) * sqrt(5e-6/3) = 3.2187586 * 0.0012909944 = 0.0041554.
    d = welch_interval(best, baseline)
    assert d is not None
    assert d.diff == pytest.approx(0.006, abs=1e-12)
    assert d.df == pytest.approx(50 / 17)
    half = 3.218758614532882 * math.sqrt(5e-6 / 3)
    assert (d.low, d.high) == pytest.approx((0.006 - half, 0.006 + half), abs=1e-12)
    assert d.low > 0  # excludes 0


def test_welch_with_equal_variances_and_sizes_has_2n_minus_2_df() -> None:
    # Variances 1 and 1, n = 3: df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4; half = t(.975, 4) sqrt(2/3).
    d = welch_interval([1, 2, 3], [4, 5, 6])
    assert d is not None and d.df == pytest.approx(4)
    half = T_975[4] * math.sqrt(2 / 3)
    assert (d.diff, d.low, d.high) == pytest.approx((-3, -3 - half, -3 + half))


def test_an_interval_that_spans_zero_does_not_exclude_it() -> None:
    d = welch_interval([0.97, 0.99], [0.98, 0.981])
    assert d is not None and d.low < 0 < d.high


def test_no_interval_from_a_single_seed_or_from_seeds_that_all_tie() -> None:
    assert welch_interval([0.98], [0.97, 0.975]) is None
    assert welch_interval([0.98, 0.98], [0.97, 0.97]) is None  # not a certain 1-point gain
    # Five seeds each: fsum / n is not exact for these, and the rounding read as a spread.
    assert welch_interval([0.9733] * 5, [0.9725] * 5) is None
    assert all(
        welch_interval([a / 1e4] * n, [0.97] * n) is None for a in range(9700, 9900) for n in (3, 5)
    )
    assert sample_of([0.9733] * 5) == Sample(0.9733, 0.0, 5)
    d = welch_interval([0.98, 0.98], [0.97, 0.971])  # one side varies: an interval again
    assert d is not None and d.low < 0.01 < d.high


def test_welch_df_weighs_each_side_by_its_own_size() -> None:
    # Five seeds against two: va = 2.5 / 5 = 0.5, vb = 2 / 2 = 1, se^2 = 1.5;
    # df = 1.5^2 / (0.5^2 / 4 + 1^2 / 1) = 2.25 / 1.0625 = 36/17 (not 2n - 2 of either side).
    d = welch_interval([1, 2, 3, 4, 5], [2, 4])
    assert d is not None and d.df == pytest.approx(36 / 17)
    half = 4.081511800727791 * math.sqrt(1.5)  # scipy.stats.t.ppf(0.975, 36 / 17)
    assert (d.diff, d.low, d.high) == pytest.approx((0.0, -half, half))


def test_welch_interval_at_another_level_uses_that_levels_quantile() -> None:
    # 90%: t(0.95, 4) = 2.1318467863266495 (scipy.stats.t.ppf), not the 95% table's 2.776.
    d = welch_interval([1, 2, 3], [4, 5, 6], level=0.90)
    assert d is not None and d.level == 0.90
    half = 2.1318467863266495 * math.sqrt(2 / 3)
    assert (d.low, d.high) == pytest.approx((-3 - half, -3 + half), rel=1e-10)
