"""Is a transfer row's difference to random initialisation more than seed noise?

Cells of one grid with the same seed and subject count train on the same subjects (the seed picks
them) from the same seeded initialisation for the tensors a plan leaves alone, so a row and the
random-init row are compared *paired by seed*: d_s = row(seed s) - random(seed s). The interval is
Student's t on those differences, mean(d) +- t(0.975, n-1) * sd(d) / sqrt(n) (scipy's quantile);
with fewer than two paired seeds it is undefined (NaN).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

LEVEL = 0.95


def paired_interval(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, lower and upper bound of the 95% t interval of (n, k) paired differences, per column."""
    d = np.asarray(differences, dtype=np.float64)
    n = d.shape[0]
    mean = d.mean(axis=0) if n else np.full(d.shape[1:], math.nan)
    if n < 2:
        nan = np.full(d.shape[1:], math.nan)
        return mean, nan, nan
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * d.std(axis=0, ddof=1) / math.sqrt(n)
    return mean, mean - half, mean + half


def excludes_zero(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per column: the interval lies wholly above or wholly below 0 (False where undefined)."""
    with np.errstate(invalid="ignore"):
        return (low > 0) | (high < 0)
