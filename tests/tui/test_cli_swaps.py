"""`swap`, `scan`, `rmse` and `bn` as a user runs them: JSON shapes, tables, errors, resume."""

from __future__ import annotations

import json

import numpy as np
from swap_lab import CLASSES, make_lab

CPU = ["--device", "cpu"]


def test_swap_json_shows_baseline_swapped_and_delta(lab, cli) -> None:
    make_lab(lab)
    code, out, _ = cli(
        "--lab",
        str(lab.root),
        "swap",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "1-5",
        "--kinds",
        "RM,RV",
        "--json",
        *CPU,
        "--progress",
        "none",
    )
    assert code == 0
    result = json.loads(out)
    assert set(result["baseline"]["dice"]) == set(CLASSES)
    [variant] = result["variants"]
    assert variant["layer"] == "1-5" and variant["kind"] == "RM,RV" and variant["alpha"] == 1.0
    assert len(variant["keys"]) == 10
    for c in CLASSES:
        assert variant["delta"][c] == variant["dice"][c] - result["baseline"]["dice"][c]
    assert result["swap"]["layers"] == ["1", "2", "3", "4", "5"]
    assert [e.id for e in lab.entries("scans")] == [result["name"]]  # kept in the lab


def test_swap_table_and_user_errors(lab, cli) -> None:
    make_lab(lab)
    code, out, err = cli(
        "--lab",
        str(lab.root),
        "swap",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "head",
        "--kinds",
        "W",
        "--alpha",
        "0.5",
        *CPU,
        "--progress",
        "none",
    )
    assert code == 0
    assert "baseline" in out and "swapped" in out and "MYO" in out and "stored as scan" in err
    code, _, err = cli(
        "--lab", str(lab.root), "swap", "seg", "wide", "--data", "toy", "--layers", "1", "--kinds", "RM", *CPU
    )
    assert code == 2
    assert "enc1.conv1.weight differs" in err and "Traceback" not in err
    code, _, err = cli(
        "--lab", str(lab.root), "swap", "ae", "seg", "--data", "toy", "--layers", "1", "--kinds", "RM", *CPU
    )
    assert code == 2 and "must be a seg checkpoint" in err
    code, _, err = cli(
        "--lab", str(lab.root), "swap", "seg", "ae", "--data", "toy", "--layers", "1", "--kinds", "XY", *CPU
    )
    assert code == 2 and "unknown kind" in err


def test_scan_json_matches_the_documented_shape_and_progress_events(lab, cli) -> None:
    make_lab(lab)
    code, out, _ = cli(
        "--lab",
        str(lab.root),
        "scan",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "3,head",
        "--kinds",
        "RM,B",
        "--alphas",
        "0,1",
        "--json",
        *CPU,
        "--progress",
        "none",
    )
    assert code == 0
    result = json.loads(out)
    assert [(v["layer"], v["kind"], v["alpha"]) for v in result["variants"]] == [
        (3, "RM", 0.0),
        (3, "RM", 1.0),
        (3, "B", 0.0),
        (3, "B", 1.0),
        ("head", "B", 0.0),
        ("head", "B", 1.0),
    ]
    for v in result["variants"]:
        assert set(v["dice"]) == set(CLASSES)
        if v["alpha"] == 0.0:  # alpha 0 keeps the recipient: exactly the baseline
            assert v["dice"] == result["baseline"]["dice"]
    code, out, _ = cli(
        "--lab",
        str(lab.root),
        "scan",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "1",
        "--kinds",
        "bn",
        *CPU,
        "--progress",
        "jsonl",
    )
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    done = [e for e in events if e["type"] == "variant_done"]
    assert [e["kind"] for e in done] == ["RM", "RV", "RW", "RB"] and done[-1]["index"] == done[-1]["total"] == 4
    assert events[-1]["type"] == "finished" and events[-1]["result"] == "seg-vs-ae-2"


def test_scan_table_full_forward_and_resume_errors(lab, cli) -> None:
    make_lab(lab)
    code, out, err = cli(
        "--lab",
        str(lab.root),
        "scan",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "1-2",
        "--kinds",
        "RM,W",
        *CPU,
        "--progress",
        "none",
        "--full-forward",
        "--name",
        "ff",
    )
    assert code == 0 and "baseline seg on toy" in out and "full:" in err
    code, out2, _ = cli(
        "--lab",
        str(lab.root),
        "scan",
        "seg",
        "ae",
        "--data",
        "toy",
        "--layers",
        "1-2",
        "--kinds",
        "RM,W",
        *CPU,
        "--progress",
        "none",
        "--json",
    )
    fast = json.loads(out2)
    from reuse_console.engine.swaps.scan_store import load_scan

    slow = load_scan(lab, "ff")
    np.testing.assert_allclose(slow.mean, [[v["dice"][c] for c in CLASSES] for v in fast["variants"]], atol=1e-9)
    code, _, err = cli("--lab", str(lab.root), "scan", "seg", "ae", "--data", "toy", "--name", "ff", "--resume", *CPU)
    assert code == 2 and "already finished" in err
    code, _, err = cli("--lab", str(lab.root), "scan", "seg", "ae", "--data", "toy", "--alphas", "2", *CPU)
    assert code == 2 and "outside [0, 1]" in err


def test_rmse_and_bn_commands(lab, cli) -> None:
    make_lab(lab)
    code, out, err = cli("--lab", str(lab.root), "rmse", "seg", "ae", "--kinds", "RM,W", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["models"] == ["seg", "ae"] and result["pairs"][0]["rows"][0]["layer"] == 1
    assert {r["kind"] for r in result["pairs"][0]["rows"]} == {"RM", "W"}
    code, out, err = cli("--lab", str(lab.root), "rmse", "seg", "ae", "seg")
    assert code == 2 and "named twice" in err
    code, out, _ = cli("--lab", str(lab.root), "rmse", "seg", "ae", "--layers", "1-2")
    assert code == 0 and "RMSE seg vs ae" in out
    code, out, _ = cli("--lab", str(lab.root), "bn", "seg", "ae", "--json")
    assert code == 0
    layers = json.loads(out)["layers"]
    assert len(layers) == 18 and layers[0]["swaps"]["RM"]["scale_ratio_geomean"] == 1.0
    code, out, _ = cli("--lab", str(lab.root), "bn", "seg", "ae")
    assert code == 0 and "s'/s" in out
