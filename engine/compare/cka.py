"""Linear CKA and debiased CKA from streamed statistics, never from all the activations at once.

For features X (n x p) and Y (n x q) of the same n samples, with linear kernels K = X X^T and
L = Y Y^T, CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith et al. 2019):

- linear CKA uses the biased HSIC tr(K H L H) (H = I - 11^T/n; its 1/(n-1)^2 cancels), which
  in feature space is ||X_c^T Y_c||_F^2 with X_c^T Y_c = X^T Y - s_x s_y^T / n, s = column sums.
- debiased CKA uses the unbiased HSIC of Song et al. (2012), as Nguyen et al. (2021) do: with
  K~, L~ the Gram matrices with their diagonals set to zero,
  HSIC_1 = [tr(K~L~) + 1^T K~ 1 * 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n(n-3)).
  With a_i = ||x_i||^2 and b_i = ||y_i||^2 every term is a sum over samples too:
  tr(K~L~) = ||X^T Y||_F^2 - sum a_i b_i,  1^T K~ 1 = ||s_x||^2 - sum a_i,
  1^T K~ L~ 1 = s_x^T X^T Y s_y - s_x^T (X^T b) - (Y^T a)^T s_y + a^T b.

So `GramStats` keeps, per layer, only X_m^T X_k for every pair of models (p_m x p_k), the column
sums, X_m^T [a_1 .. a_M] and the scalars: memory independent of the number of samples, and a batch
is folded in as soon as it has run. Features are shifted by a fixed vector per model (the first
batch's mean) before they are summed; both HSICs are invariant to that shift, and it keeps the
float64 sums from cancelling when activations have a large mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class GramStats:
    """Streamed sufficient statistics of M models' features at one layer (float64)."""

    def __init__(self, models: int) -> None:
        self.models = models
        self.n = 0
        self.shift: list[torch.Tensor] = []
        self.sums: list[torch.Tensor] = []  # (p_m,)
        self.weighted: list[torch.Tensor] = []  # (p_m, M): sum_i x_i^m ||x_i^k||^2
        self.norms = torch.zeros(0)  # (M, M): sum_i ||x_i^m||^2 ||x_i^k||^2
        self.trace = torch.zeros(0)  # (M,): sum_i ||x_i^m||^2
        self.cross: dict[tuple[int, int], torch.Tensor] = {}  # m <= k: X_m^T X_k

    def update(self, features: Sequence[torch.Tensor]) -> None:
        """Fold in one batch: `features[m]` is model m's (rows, p_m) matrix for the same rows."""
        if len(features) != self.models:
            raise ValueError(f"expected features of {self.models} models, got {len(features)}")
        rows = {int(f.shape[0]) for f in features}
        if len(rows) != 1:
            raise ValueError(f"models gave different sample counts: {sorted(rows)}")
        xs = [f.to(torch.float64) for f in features]
        if not self.shift:
            self._start(xs)
        xs = [x - c for x, c in zip(xs, self.shift)]
        sq = torch.stack([(x * x).sum(dim=1) for x in xs], dim=1)  # (rows, M)
        self.n += rows.pop()
        self.trace += sq.sum(dim=0)
        self.norms += sq.T @ sq
        for m, x in enumerate(xs):
            self.sums[m] += x.sum(dim=0)
            self.weighted[m] += x.T @ sq
            for k in range(m, self.models):
                self.cross[(m, k)] += x.T @ xs[k]

    def _start(self, xs: list[torch.Tensor]) -> None:
        dev = xs[0].device
        self.shift = [x.mean(dim=0) for x in xs]
        self.sums = [torch.zeros(x.shape[1], dtype=torch.float64, device=dev) for x in xs]
        self.weighted = [torch.zeros(x.shape[1], self.models, dtype=torch.float64, device=dev) for x in xs]
        self.norms = torch.zeros(self.models, self.models, dtype=torch.float64, device=dev)
        self.trace = torch.zeros(self.models, dtype=torch.float64, device=dev)
        self.cross = {
            (m, k): torch.zeros(xs[m].shape[1], xs[k].shape[1], dtype=torch.float64, device=dev)
            for m in range(self.models)
            for k in range(m, self.models)
        }

    def _xty(self, m: int, k: int) -> torch.Tensor:
        return self.cross[(m, k)] if m <= k else self.cross[(k, m)].T

    def hsic_biased(self, m: int, k: int) -> float:
        """tr(K H L H) of models m and k (the biased HSIC times (n-1)^2)."""
        centred = self._xty(m, k) - torch.outer(self.sums[m], self.sums[k]) / self.n
        return float((centred * centred).sum())

    def hsic_unbiased(self, m: int, k: int) -> float:
        """Song et al.'s unbiased HSIC of models m and k (NaN below 4 samples)."""
        n = self.n
        if n < 4:
            return math.nan
        c = self._xty(m, k)
        s_x, s_y = self.sums[m], self.sums[k]
        trace_kl = float((c * c).sum()) - float(self.norms[m, k])
        sum_k = float(s_x @ s_x) - float(self.trace[m])
        sum_l = float(s_y @ s_y) - float(self.trace[k])
        klsum = float(s_x @ c @ s_y) - float(s_x @ self.weighted[m][:, k]) - float(self.weighted[k][:, m] @ s_y)
        klsum += float(self.norms[m, k])
        return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * klsum / (n - 2)) / (n * (n - 3))

    def linear_cka(self, m: int, k: int) -> float:
        """Linear CKA of models m and k (NaN when either has no variance)."""
        return _ratio(self.hsic_biased(m, k), self.hsic_biased(m, m), self.hsic_biased(k, k))

    def debiased_cka(self, m: int, k: int) -> float:
        """Debiased CKA of models m and k (NaN below 4 samples or without estimated variance)."""
        return _ratio(self.hsic_unbiased(m, k), self.hsic_unbiased(m, m), self.hsic_unbiased(k, k))

    def nbytes(self) -> int:
        tensors = [*self.sums, *self.weighted, *self.cross.values(), self.norms, self.trace, *self.shift]
        return sum(t.numel() * t.element_size() for t in tensors)


def stats_bytes(channels: Sequence[int]) -> int:
    """What a GramStats of models with these feature widths holds, in bytes (float64)."""
    m = len(channels)
    cross = sum(channels[i] * channels[j] for i in range(m) for j in range(i, m))
    return 8 * (cross + sum(channels) * (m + 2) + m * m + m)


def _ratio(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float:
    if not (hsic_xx > 0 and hsic_yy > 0):
        return math.nan
    return hsic_xy / math.sqrt(hsic_xx * hsic_yy)


def _in_memory(x: torch.Tensor, y: torch.Tensor) -> GramStats:
    stats = GramStats(2)
    stats.update([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)])
    return stats


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices of the same samples (rows), all in memory."""
    return _in_memory(x, y).linear_cka(0, 1)


def debiased_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Debiased CKA of two feature matrices of the same samples (rows), all in memory."""
    return _in_memory(x, y).debiased_cka(0, 1)
