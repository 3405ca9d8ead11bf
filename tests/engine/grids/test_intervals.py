"""Table 3's difference to random init: paired by seed, with a 95% t interval, checked by scipy's
own paired t-test and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from reuse_console.engine.grids.experiment import CellRecord, Experiment

CLASSES = ["background", "RV"]


def _cell(source: str, mode: str, seed: int, rv: float) -> CellRecord:
    dice = np.array([[0.95, rv], [0.95, rv + 0.02]])  # two validation subjects
    return CellRecord(f"{source}-{mode}-{seed}", source, mode, 10, seed, f"c{seed}", dice)


def _experiment(random: list[float], ae: list[float], seeds: list[int]) -> Experiment:
    cells = [_cell("random", "scratch", s, v) for s, v in zip(seeds, random)]
    cells += [_cell("ae", "freeze", s, v) for s, v in zip(seeds, ae)]
    return Experiment("e", "t", CLASSES, [True, True], ["p1", "p2"], cells, random_source="random")


def test_difference_and_interval_equal_scipys_paired_t_test() -> None:
    random, ae = [0.60, 0.70, 0.64, 0.58], [0.66, 0.71, 0.70, 0.61]
    exp = _experiment(random, ae, [0, 1, 2, 3])
    row = next(r for r in exp.table() if r.source == "ae")
    rv = 1  # column of class RV (the fg mean column is the same: RV is the only foreground class)
    a, b = np.asarray(ae) + 0.01, np.asarray(random) + 0.01  # per-cell mean over the two subjects
    want = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert row.diff[rv] == pytest.approx(float(np.mean(a - b)))
    assert (row.low[rv], row.high[rv]) == pytest.approx((want.low, want.high))
    assert bool(row.significant[rv]) == (want.low > 0 or want.high < 0)
    as_json = next(r for r in exp.table_json() if r["source"] == "ae")
    assert as_json["diff_ci95"]["RV"] == pytest.approx([want.low, want.high])


def test_pairs_follow_the_seed_not_the_order_and_one_pair_has_no_interval() -> None:
    exp = _experiment([0.5, 0.9], [0.9, 0.5], [0, 1])
    exp.cells[2:] = [_cell("ae", "freeze", 1, 0.95), _cell("ae", "freeze", 0, 0.55)]  # stored in the other order
    row = next(r for r in exp.table() if r.source == "ae")
    assert row.diff[1] == pytest.approx(0.05)  # (0.95 - 0.9 + 0.55 - 0.5) / 2
    # by hand: differences 0.05, 0.05: sd 0, the interval collapses onto the mean and excludes 0
    assert row.low[1] == pytest.approx(0.05) and row.significant[1]
    one = _experiment([0.5], [0.9], [0])
    r1 = next(r for r in one.table() if r.source == "ae")
    assert r1.diff[1] == pytest.approx(0.4) and math.isnan(r1.low[1]) and not r1.significant[1]
    header, rows = one.table_cells()
    assert "(+0.400)" in rows[1][5] and "*" not in rows[1][5]
