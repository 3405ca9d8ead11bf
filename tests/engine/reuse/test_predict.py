"""The predictor table: rank statistics against scipy.stats, and `predict` on a scan checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from predict_lab import permuted_copy, scan_with_drops
from scipy import stats
from swap_lab import make_lab

from reuse_console.engine.reuse.predict_lab import run_predict
from reuse_console.engine.reuse.predict_stats import auc, bootstrap_interval, ranks, spearman
from reuse_console.engine.reuse.predict_store import read_predictor
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError


@pytest.mark.parametrize("seed", range(5))
def test_spearman_and_ranks_equal_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x * 0.3 + rng.normal(size=40)
    assert np.allclose(ranks(x), stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))  # constant: undefined, as in scipy
    assert np.isnan(spearman(np.arange(2.0), np.arange(2.0)))


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_mann_whitney_u_over_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, 50).astype(float)
    positive = rng.random(50) < 0.4
    u = stats.mannwhitneyu(scores[positive], scores[~positive]).statistic
    assert auc(scores, positive) == pytest.approx(u / (positive.sum() * (~positive).sum()), abs=1e-12)
    assert auc(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == 1.0  # hand count: 2 of 2 pairs
    assert np.isnan(auc(scores, np.ones(50, bool)))


def test_bootstrap_interval_agrees_with_scipy_bootstrap() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=80)
    y = 0.5 * x + rng.normal(size=80)
    low, high = bootstrap_interval(x, y, resamples=4000, seed=1)
    ref = stats.bootstrap(
        (x, y),
        lambda a, b: stats.spearmanr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=4000,
        method="percentile",
        random_state=np.random.default_rng(7),
    ).confidence_interval
    assert low < spearman(x, y) < high
    assert low == pytest.approx(ref.low, abs=0.04) and high == pytest.approx(ref.high, abs=0.04)


def test_predict_on_a_scan_matches_hand_computations(lab) -> None:
    make_lab(lab)
    recipient, _ = read_checkpoint(lab.path("checkpoints", "seg"))
    donor, _ = read_checkpoint(lab.path("checkpoints", "ae"))
    scan = scan_with_drops(lab, "seg", "ae", "s")
    result = run_predict(lab, "s", measures="rmse,relative,norm,bn-dt", resamples=200)

    fg = [1, 2, 3]
    base = scan.baseline.mean(axis=0)
    assert len(result.tensors) == sum(1 for v in scan.variants if v.alpha == 1.0)
    col = {m: i for i, m in enumerate(result.measures)}
    assert list(col) == ["rmse", "relative", "bn-dt", "norm"]  # in the tool's order
    for t in result.tensors:
        v = next(i for i, var in enumerate(scan.variants) if var.keys == (t.key,))
        assert t.drop == pytest.approx(max(base[c] - scan.dice[v, :, c].mean() for c in fg))
        a, b = recipient[t.key].double(), donor[t.key].double()
        rmse = float(((a - b) ** 2).mean().sqrt())
        assert t.values[col["rmse"]] == pytest.approx(rmse, rel=1e-9)
        assert t.values[col["relative"]] == pytest.approx(rmse / float((a**2).mean().sqrt()), rel=1e-9)
        assert t.values[col["norm"]] == pytest.approx(float(a.norm()), rel=1e-9)
        assert np.isnan(t.values[col["bn-dt"]]) == (t.kind not in ("RM", "RV", "RW", "RB"))

    drops = np.array([t.drop for t in result.tensors])
    assert 5 < (drops <= 0.05).sum() < len(drops) - 5  # both reusable and not: the AUC is defined
    for m, measure in enumerate(result.measures):
        values = np.array([t.values[m] for t in result.tensors])
        ok = np.isfinite(values)
        row = result.row(measure)
        assert row is not None and row.n == ok.sum()
        assert row.rho == pytest.approx(stats.spearmanr(values[ok], drops[ok]).statistic, abs=1e-9, nan_ok=True)
        pos = drops[ok] <= 0.05 + 1e-9
        if 0 < pos.sum() < ok.sum():
            u = stats.mannwhitneyu(-values[ok][pos], -values[ok][~pos]).statistic  # small difference = similar
            assert row.auc == pytest.approx(u / (pos.sum() * (~pos).sum()))
    for kind in ("RM", "W"):
        row = result.row("rmse", kind)
        mine = [(t.values[0], t.drop) for t in result.tensors if t.kind == kind]
        assert row is not None and row.rho == pytest.approx(stats.spearmanr(*zip(*mine)).statistic, nan_ok=True)

    stored = read_predictor(lab.path("comparisons", result.name))
    assert stored.to_json() == result.to_json() | {"name": stored.name}
    with pytest.raises(UserError, match="unknown measure"):
        run_predict(lab, "s", measures="rmse,magic")


def test_a_permuted_copy_is_aligned_back_and_has_cka_one(lab) -> None:
    make_lab(lab)
    permuted_copy(lab, "seg", "perm")
    run_scan(lab, "seg", "perm", "toy", layers="1-4", kinds="RM,W", device="cpu", name="sp")
    result = run_predict(lab, "sp", measures="rmse,aligned-rmse,cka", resamples=0)
    values = np.array([t.values for t in result.tensors])
    assert (values[:, 0] > 1e-3).all()  # the raw donor's channels are in another order
    assert np.abs(values[:, 1]).max() < 1e-6  # aligned back exactly
    assert values[:, 2] == pytest.approx(1.0, abs=1e-6)  # the same function: CKA 1 at every layer
