"""Rank statistics for predictors: Spearman's rho, its bootstrap interval, and the AUC.

Written with numpy alone (tests check them against scipy.stats), so the predictor table needs no
more than the engine already loads.

- Spearman's rho is Pearson's correlation of the ranks, ties given their average rank (the
  definition scipy.stats.spearmanr uses). Undefined (NaN) below 3 pairs or when either side is
  constant.
- The 95% interval is the percentile bootstrap: resample the (measure, drop) pairs with
  replacement, recompute rho, take the 2.5% and 97.5% quantiles of the finite values. Seeded, so a
  stored table is reproducible.
- AUC is the probability that a randomly chosen positive (a reusable tensor) scores above a
  randomly chosen negative, ties counting one half: the Mann-Whitney U statistic divided by the
  number of positive x negative pairs. 0.5 is chance.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing their average rank."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.concatenate(([True], sorted_x[1:] != sorted_x[:-1]))
    group = np.cumsum(starts) - 1  # tie group of each sorted position
    first = np.flatnonzero(starts)
    last = np.concatenate((first[1:], [len(x)])) - 1
    average = (first + last) / 2.0 + 1.0
    out = np.empty(len(x), dtype=np.float64)
    out[order] = average[group]
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if denom == 0.0:
        return float("nan")
    return float(np.clip((a * b).sum() / denom, -1.0, 1.0))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of paired samples (NaN when undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"paired samples of different lengths: {len(x)} and {len(y)}")
    if len(x) < 3:
        return float("nan")
    return _pearson(ranks(x), ranks(y))


def bootstrap_interval(
    x: np.ndarray, y: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho over resampled pairs ((NaN, NaN) if undefined)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 3 or resamples < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    values = np.array([spearman(x[d], y[d]) for d in draws])
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + P(tie) / 2; NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(ranks(s)[pos].sum())
    u = rank_sum - n_pos * (n_pos + 1) / 2.0  # Mann-Whitney U of the positives
    return u / (n_pos * n_neg)
