"""Confidence intervals against published tables and hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.stats import (
    bootstrap_diff_interval, mean_ci, newcombe_diff_interval, t_quantile_975, t_two_sided_mass, wilson_interval,
)


@pytest.mark.parametrize("df,expected", [
    (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262), (10, 2.228), (29, 2.045), (30, 2.042),
])
def test_t_quantile_matches_printed_tables(df, expected):
    assert t_quantile_975(df) == pytest.approx(expected, abs=6e-4)


def test_t_mass_closed_forms():
    # df = 1 is the Cauchy distribution: P(|T| <= 1) = 1/2; df = 2: P(|T| <= t) = t / sqrt(2 + t^2)
    assert t_two_sided_mass(1.0, 1) == pytest.approx(0.5)
    assert t_two_sided_mass(3.0, 2) == pytest.approx(3 / math.sqrt(11))
    assert t_two_sided_mass(1e6, 7) == pytest.approx(1.0)


def test_mean_ci_by_hand():
    m = mean_ci([50.0, 60.0, 70.0])  # s = 10, n = 3, t(2) = 4.3027
    assert m.mean == 60.0 and m.n == 3 and m.std == pytest.approx(10.0)
    assert m.half_width == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)
    one = mean_ci([42.0])
    assert one.n == 1 and one.low is None and one.high is None and one.half_width is None


def test_wilson_known_values():
    # 81 of 263 (Newcombe 1998, single-proportion example): 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert (lo, hi) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    # 0 of 10: the upper bound is z^2 / (n + z^2) = 3.8415 / 13.8415
    assert wilson_interval(0, 10)[1] == pytest.approx(3.841459 / 13.841459)


def test_newcombe_paper_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80,
    # method 10 interval for p1 - p2 = 0.2: 0.0524 to 0.3339. Ours is B - A.
    d = newcombe_diff_interval(48, 80, 56, 70)
    assert d.diff == pytest.approx(0.2)
    assert (d.low, d.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_bootstrap_interval_properties():
    a = np.zeros(50)
    b = np.ones(50)
    d = bootstrap_diff_interval(a, b, resamples=200)
    assert (d.diff, d.low, d.high) == (1.0, 1.0, 1.0)  # no variance, no width
    rng = np.random.default_rng(1)
    x, y = rng.normal(0, 1, 400), rng.normal(0.5, 1, 400)
    d1 = bootstrap_diff_interval(x, y, resamples=500, seed=3)
    d2 = bootstrap_diff_interval(x, y, resamples=500, seed=3)
    assert d1 == d2  # seeded
    assert d1.low < d1.diff < d1.high
    # roughly +- 1.96 * sqrt(2 / 400) = +- 0.139 around the difference
    assert d1.high - d1.low == pytest.approx(2 * 1.96 * math.sqrt(2 / 400), rel=0.2)
    ratio = bootstrap_diff_interval([[1, 4], [0, 4]], [[2, 4], [2, 4]], lambda r: r[:, 0].sum() / r[:, 1].sum(),
                                    resamples=50)
    assert ratio.a == pytest.approx(1 / 8) and ratio.b == pytest.approx(0.5)
