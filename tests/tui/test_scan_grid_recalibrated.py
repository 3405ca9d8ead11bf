"""The Scan view's grid of a recalibrated scan: `a` cycles raw and recalibrated Dice."""

from __future__ import annotations

import numpy as np

from reuse_console.engine.swaps.variants import ScanResult, Variant
from reuse_console.tui.widgets.scan_grid import scan_grid


def _result() -> ScanResult:
    variants = [
        Variant("1", "RM", 1.0, ("a.running_mean",), 1, ("a",)),
        Variant("1", "W", 1.0, ("c.weight",), 1, ("c",)),
    ]
    classes, present = ["background", "RV"], [True, True]
    baseline = np.array([[0.9, 0.8]])
    dice = np.array([[[0.9, 0.2]], [[0.9, 0.7]]])
    result = ScanResult("s", "r", "d", "toy", classes, present, ["p1"], baseline, variants, dice)
    result.recalibrated_baseline = np.array([[0.9, 0.6]])
    result.recalibrated = np.array([[[0.9, 0.6]], [[0.9, 0.5]]])
    result.options = {"recalibrate": 4, "recalibrate_batches": 4, "recalibrate_scope": "all"}
    return result


def test_recalibrated_choice_shows_the_recalibrated_dice() -> None:
    raw = scan_grid(_result(), 0)
    recal = scan_grid(_result(), 1)
    assert raw.choices == ("1", "1 recalibrated")
    assert raw.cells[("1", "RM")][0] == "0.200" and recal.cells[("1", "RM")][0] == "0.600"
    assert recal.cells[("1", "W")][0] == "0.500"
    assert "recalibrated" in recal.title.plain and "raw" in raw.title.plain
    assert "0.600" in recal.title.plain  # the recalibrated baseline's foreground Dice
    assert scan_grid(_result(), 2).cells == raw.cells  # the choice wraps around
