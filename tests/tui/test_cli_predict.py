"""`reuse-console predict` and `plan --from` as a user runs them, on a scan with made-up drops."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from predict_lab import scan_with_drops
from scipy import stats
from swap_lab import make_lab


def test_predict_table_json_show_and_plan_from(lab, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    make_lab(lab)
    scan = scan_with_drops(lab, "seg", "ae", "s")
    at = ["--lab", str(lab.root)]

    code, out, err = cli(*at, "predict", "s", "--measures", "rmse,relative,bn-dt,bn-ds,norm", "--progress", "none")
    assert code == 0, err
    assert "stored as comparison predict-s" in err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "relative" in out and "per kind" in out and "95% interval" in out

    code, out, err = cli(*at, "predict", "s", "--measures", "rmse", "--json", "--resamples", "50", "--name", "p2")
    assert code == 0, err
    result = json.loads(out)
    drops = np.array([t["drop"] for t in result["tensors"]])
    values = np.array([t["rmse"] for t in result["tensors"]])
    overall = next(r for r in result["rows"] if r["group"] == "all")
    assert np.isclose(overall["rho"], stats.spearmanr(values, drops).statistic, atol=1e-12)
    assert overall["rho_low"] <= overall["rho"] <= overall["rho_high"]
    assert len(result["tensors"]) == sum(v.alpha == 1.0 for v in scan.variants)

    code, out, _ = cli(*at, "show", "p2")
    assert code == 0 and "Does a measure predict the Dice drop of s" in out
    code, out, _ = cli(*at, "ls", "comparisons")
    assert code == 0 and "p2" in out and "AUC" in out

    threshold = float(np.median(values))
    code, out, err = cli(*at, "plan", "--scan", "s", "--from", "rmse", "--threshold", str(threshold), "--json")
    assert code == 0, err
    plan = json.loads(out)
    agree = plan["provenance"]["agreement"]
    by_measure = values <= threshold + 1e-9
    by_swaps = drops <= 0.05 + 1e-9
    assert agree["tensors"] == len(drops)
    assert agree["both"] == int((by_measure & by_swaps).sum())
    assert agree["measure_only"] == int((by_measure & ~by_swaps).sum())
    assert agree["swaps_only"] == int((~by_measure & by_swaps).sum())
    scanned = [t["key"] for t in result["tensors"]]
    reused = {t["key"] for t in plan["table"] if t["reusable"]}
    assert reused & set(scanned) == {k for k, ok in zip(scanned, by_measure) if ok}

    code, out, err = cli(*at, "plan", "--scan", "s", "--from", "cka")
    assert code == 2 and "--threshold" in err


def test_report_draws_a_predictor(lab, cli, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    make_lab(lab)
    scan_with_drops(lab, "seg", "ae", "s", layers="1-3")
    at = ["--lab", str(lab.root)]
    code, out, err = cli(*at, "predict", "s", "--measures", "rmse,norm", "--json", "--resamples", "20")
    assert code == 0, err
    result = json.loads(out)
    code, out, err = cli(*at, "report", result["name"], "--out", str(tmp_path / "fig"))
    assert code == 0, err
    assert (tmp_path / "fig" / "predict-s-predictor.png").stat().st_size > 10_000
    with open(tmp_path / "fig" / "predict-s-tensors.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["key"] for r in rows] == [t["key"] for t in result["tensors"]]
    assert [float(r["rmse"]) for r in rows] == pytest.approx([t["rmse"] for t in result["tensors"]], rel=1e-5)
    assert "| rmse | " in (tmp_path / "fig" / "index.md").read_text()
