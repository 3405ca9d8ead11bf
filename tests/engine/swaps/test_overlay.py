"""Overlays of several scans: lines, pair-set means and bands, recalibrated lines, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from reuse_console.engine.swaps.overlay import build_overlay, donor_label
from reuse_console.engine.swaps.variants import ScanResult, Variant
from reuse_console.store.errors import UserError

CLASSES = ["background", "RV", "LV"]


def _scan(name: str, donor: str, after: list[list[float]], *, pairs: str | None = None, recal=None) -> ScanResult:
    """Layers 1 and 2 with kinds RM and W; `after[v]` = (RV, LV) Dice of variant v (one subject)."""
    variants = [
        Variant(str(layer), kind, 1.0, (f"l{layer}.{kind}",), layer, (f"l{layer}",))
        for layer in (1, 2)
        for kind in ("RM", "W")
    ]
    baseline = np.array([[0.99, 0.8, 0.9]])
    dice = np.array([[[0.99, *a]] for a in after])
    options = {"pairs": pairs} if pairs else {}
    extra = {}
    if recal is not None:
        extra = {
            "recalibrated_baseline": np.array([[0.99, 0.7, 0.7]]),
            "recalibrated": np.array([[[0.99, *a]] for a in recal]),
        }
    return ScanResult(
        name, "seg", donor, "toy", CLASSES, [True] * 3, ["s"], baseline, variants, dice, options=options, **extra
    )


def test_lines_means_and_bands_by_hand() -> None:
    # variants in order: 1 RM, 1 W, 2 RM, 2 W
    a = _scan("p-1", "ae-s0", [[0.8, 0.9], [0.4, 0.6], [0.7, 0.9], [0.8, 0.8]], pairs="seg:ae-s0,seg2:ae-s1")
    b = _scan("p-2", "ae-s1", [[0.6, 0.8], [0.2, 0.2], [0.7, 0.9], [0.8, 0.6]], pairs="seg:ae-s0,seg2:ae-s1")
    init = _scan("i", "init", [[0.1, 0.1], [0.0, 0.2], [0.5, 0.5], [0.3, 0.1]], recal=[[0.7, 0.7]] * 4)
    view = build_overlay([a, init, b])
    assert view.layers == ("1", "2") and view.kinds == ("RM", "W") and view.index == (1, 2)
    assert [line.label for line in view.lines] == ["ae-s* ×2 pairs", "init", "init recal"]
    pair, reset, recal = view.lines
    assert pair.scans == ("p-1", "p-2") and pair.baseline == pytest.approx(0.85)
    # foreground means: a 1RM .85, 1W .5, 2RM .8, 2W .8; b 1RM .7, 1W .2, 2RM .8, 2W .7
    assert view.at(0, "1", "RM") == pytest.approx((0.775, 0.7, 0.85))
    assert view.at(0, "1", "W") == pytest.approx((0.35, 0.2, 0.5))
    assert view.at(0, "2", "W") == pytest.approx((0.75, 0.7, 0.8))
    assert view.at(1, "2", "RM") == pytest.approx((0.5, 0.5, 0.5)) and reset.pairs == 1
    assert recal.recalibrated and recal.baseline == pytest.approx(0.7) and view.at(2, "1", "W")[0] == pytest.approx(0.7)


def test_labels_and_refusals() -> None:
    assert [donor_label(d) for d in ("init", "random:7", "unet-ae")] == ["init", "random", "unet-ae"]
    raw, aligned = _scan("r", "ae-s1", [[0.5, 0.5]] * 4), _scan("a", "ae-s1", [[0.5, 0.5]] * 4)
    aligned.options["align"] = "weights"  # scan --align: the same donor, its channels reordered
    assert [line.label for line in build_overlay([raw, aligned]).lines] == ["ae-s1", "ae-s1 aligned"]
    with pytest.raises(UserError, match="at least one scan"):
        build_overlay([])
    other = _scan("x", "ae", [[0.5, 0.5]] * 4)
    other.variants = [Variant(f"u{i}", "W", 1.0, (f"u{i}.w",), None, (f"u{i}",)) for i in range(4)]
    with pytest.raises(UserError, match="share no layers"):
        build_overlay([_scan("y", "ae", [[0.5, 0.5]] * 4), other])
