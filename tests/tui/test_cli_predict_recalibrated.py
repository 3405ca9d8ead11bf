"""`predict --recalibrated`: the drops come from the scan's recalibrated Dice (scan --recalibrate),
checked by hand against the arrays the scan file holds."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from predict_lab import scan_with_drops
from scipy import stats
from swap_lab import make_lab

from reuse_console.engine.swaps.scan_store import load_scan, write_scan


def test_predict_recalibrated_ranks_the_recalibrated_drops(lab, cli) -> None:
    make_lab(lab)
    raw = scan_with_drops(lab, "seg", "ae", "s", layers="1-4")
    rng = np.random.default_rng(5)
    # made-up recalibrated Dice: a baseline of its own, and drops unrelated to the raw ones
    base = np.clip(0.8 + 0.05 * rng.normal(size=raw.baseline.shape), 0, 1)
    drop = rng.uniform(0.0, 0.12, (len(raw.variants), raw.baseline.shape[1]))
    recal = base[None] - drop[:, None, :] + 0.005 * rng.normal(size=raw.dice.shape)
    write_scan(lab.path("scans", "sr"), replace(raw, name="sr", recalibrated_baseline=base, recalibrated=recal))
    stored = load_scan(lab, "sr")
    at = ["--lab", str(lab.root)]

    code, out, err = cli(*at, "predict", "sr", "--recalibrated", "--measures", "rmse", "--json", "--resamples", "20")
    assert code == 0, err
    result = json.loads(out)
    assert result["name"] == "predict-sr-recal" and result["recalibrated"] is True
    fg = [c for c, present in enumerate(stored.present) if present and c > 0]
    by_key = {v.keys[0]: i for i, v in enumerate(stored.variants) if v.alpha == 1.0 and len(v.keys) == 1}
    assert len(result["tensors"]) == len(by_key)
    for t in result["tensors"]:
        i = by_key[t["key"]]
        hand = max(base[:, c].mean() - recal[i, :, c].mean() for c in fg)  # worst foreground class
        raw_drop = max(raw.baseline[:, c].mean() - raw.dice[i, :, c].mean() for c in fg)
        assert t["drop"] == pytest.approx(hand, abs=1e-12)
        assert t["drop"] != pytest.approx(raw_drop, abs=1e-6)
    drops = np.array([t["drop"] for t in result["tensors"]])
    values = np.array([t["rmse"] for t in result["tensors"]])
    overall = next(r for r in result["rows"] if r["group"] == "all")
    assert overall["rho"] == pytest.approx(stats.spearmanr(values, drops).statistic, abs=1e-12)
    assert overall["reusable"] == int((drops <= 0.05 + 1e-9).sum())

    code, out, _ = cli(*at, "show", "predict-sr-recal")
    assert code == 0 and "recalibrated Dice drop of sr" in out
    code, out, err = cli(*at, "predict", "sr", "--measures", "rmse", "--json", "--resamples", "0")
    assert code == 0 and json.loads(out)["recalibrated"] is False  # the raw drops stay the default

    code, out, err = cli(*at, "predict", "s", "--recalibrated", "--measures", "rmse")
    assert code == 2 and "not scanned with --recalibrate" in err and "Traceback" not in err
