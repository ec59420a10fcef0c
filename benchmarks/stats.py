"""Confidence intervals used by the leaderboard and ``compare`` (pure functions, no SciPy).

* :func:`mean_ci`: mean over seeds with a Student-t 95% interval (n >= 2; n = 1 gives
  no interval, never an invented one).
* :func:`wilson_interval` / :func:`newcombe_diff_interval`: a success rate and the
  difference of two independent success rates (Newcombe 1998, method 10: the hybrid
  score interval built from the two Wilson intervals).
* :func:`bootstrap_diff_interval`: percentile bootstrap for the difference of any
  statistic of two independent samples (episodes), with a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

Z_975 = 1.959963984540054
"""The standard normal 0.975 quantile."""


def t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` >= 1 (Abramowitz & Stegun 26.7.3-4).

    Closed forms with theta = atan(t / sqrt(df)):
    odd df:  (2/pi) * (theta + sin(theta) * sum_{k=0}^{(df-3)/2} a_k cos(theta)^(2k+1)),
             a_0 = 1, a_k = a_{k-1} * 2k / (2k+1);
    even df: sin(theta) * sum_{k=0}^{(df-2)/2} b_k cos(theta)^(2k),
             b_0 = 1, b_k = b_{k-1} * (2k-1) / (2k).
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        total, term = 0.0, c
        for k in range((df - 1) // 2):
            if k > 0:
                term *= c * c * (2 * k) / (2 * k + 1)
            total += term
        return (2 / math.pi) * (theta + s * total) if df > 1 else 2 * theta / math.pi
    total, term = 0.0, 1.0
    for k in range(df // 2):
        if k > 0:
            term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (bisection)."""
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_mass(mid, df) < 0.95:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class MeanCI:
    """A mean with its 95% interval; ``low``/``high`` are None when n < 2."""

    mean: float
    n: int
    std: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.high is None else self.high - self.mean


def mean_ci(values: Sequence[float]) -> MeanCI:
    """Mean and Student-t 95% interval: mean +- t_{0.975, n-1} * s / sqrt(n) (s: sample std)."""
    x = [float(v) for v in values]
    n = len(x)
    if n == 0:
        raise ValueError("no values")
    m = sum(x) / n
    if n == 1:
        return MeanCI(m, 1, None, None, None)
    s = math.sqrt(sum((v - m) ** 2 for v in x) / (n - 1))
    h = t_quantile_975(n - 1) * s / math.sqrt(n)
    return MeanCI(m, n, s, m - h, m + h)


def wilson_interval(successes: int, n: int, z: float = Z_975) -> tuple[float, float]:
    """Wilson score interval of a proportion (returns (0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


@dataclass(frozen=True)
class Diff:
    """B - A with a 95% interval and how it was computed."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    method: str


def newcombe_diff_interval(s_a: int, n_a: int, s_b: int, n_b: int) -> Diff:
    """p_b - p_a with Newcombe's hybrid score interval (method 10) from Wilson intervals.

    low = d - sqrt((p_b - l_b)^2 + (u_a - p_a)^2), high = d + sqrt((u_b - p_b)^2 + (p_a - l_a)^2).
    """
    pa = s_a / n_a if n_a else 0.0
    pb = s_b / n_b if n_b else 0.0
    la, ua = wilson_interval(s_a, n_a)
    lb, ub = wilson_interval(s_b, n_b)
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return Diff(pa, pb, d, low, high, "Newcombe hybrid score (Wilson)")


def bootstrap_diff_interval(
    a: Sequence[Sequence[float]] | Sequence[float],
    b: Sequence[Sequence[float]] | Sequence[float],
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Diff:
    """statistic(b) - statistic(a) with a percentile bootstrap 95% interval.

    ``a`` and ``b`` hold one row per episode (shape (n,) or (n, k)); each resample draws
    the episodes of A and of B independently with replacement. ``statistic`` maps a
    resampled array to a number (default: the mean of a 1-D array).
    """
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    stat = statistic or (lambda x: float(np.mean(x)))
    if len(xa) == 0 or len(xb) == 0:
        raise ValueError("both samples need at least one episode")
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        ia = rng.integers(len(xa), size=len(xa))
        ib = rng.integers(len(xb), size=len(xb))
        diffs[i] = stat(xb[ib]) - stat(xa[ia])
    sa, sb = stat(xa), stat(xb)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Diff(sa, sb, sb - sa, float(low), float(high), f"percentile bootstrap over episodes ({resamples} resamples)")
