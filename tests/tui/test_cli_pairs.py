"""Scans over several recipient/donor pairs and plans that must hold across them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from swap_lab import make_checkpoint, make_lab

from reuse_console.engine.reuse.plans import drops_across
from reuse_console.engine.swaps.scan_store import load_scan
from reuse_console.store.errors import UserError


class _Scan:
    """The fields `scan_dice_drops` reads, with hand-set Dice."""

    def __init__(self, name: str, rv_after: list[float]) -> None:
        from reuse_console.engine.swaps.variants import Variant

        self.name, self.present = name, [True, True]
        self.baseline = np.array([[0.9, 0.8]])
        self.variants = [Variant(str(i), "W", 1.0, (f"k{i}.weight",), i, (f"k{i}",)) for i in range(len(rv_after))]
        self.dice = np.array([[[0.9, v]] for v in rv_after])


def test_drops_across_pairs_by_hand() -> None:
    a, b = _Scan("a", [0.79, 0.70, 0.80]), _Scan("b", [0.72, 0.79, 0.80])
    # drops a: .01 .10 .00; b: .08 .01 .00
    assert drops_across([a, b], "all") == pytest.approx({"k0.weight": 0.08, "k1.weight": 0.10, "k2.weight": 0.0})
    assert drops_across([a, b], "mean") == pytest.approx({"k0.weight": 0.045, "k1.weight": 0.055, "k2.weight": 0.0})
    with pytest.raises(UserError, match="unknown --across 'any'"):
        drops_across([a, b], "any")


def test_scan_pairs_and_a_plan_across_them(lab, cli) -> None:
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=7)
    L = ("--lab", str(lab.root))
    code, out, err = cli(
        *L, "scan", "--pairs", "seg:ae,seg2:ae", "--data", "toy", "--layers", "1-4", "--name", "pp", "--device", "cpu"
    )
    assert code == 0, err
    assert "2 pairs on toy" in out and all(len(line) <= 80 for line in out.splitlines())
    one, two = load_scan(lab, "pp-1"), load_scan(lab, "pp-2")
    assert (one.recipient, two.recipient) == ("seg", "seg2")
    plans = {}
    for across in ("all", "mean"):
        code, out, err = cli(
            *L, "plan", "--scan", "pp-1", "--scan", "pp-2", "--across", across, "--name", across, "--json"
        )
        assert code == 0, err
        plans[across] = {(t["layer"], t["kind"]) for t in json.loads(out)["table"] if t["reusable"]}
    singles = []
    for scan in ("pp-1", "pp-2"):
        code, out, err = cli(*L, "plan", "--scan", scan, "--name", f"only-{scan}", "--json")
        assert code == 0, err
        singles.append({(t["layer"], t["kind"]) for t in json.loads(out)["table"] if t["reusable"]})
    assert plans["all"] == singles[0] & singles[1]  # reusable in every pair
    assert singles[0] & singles[1] <= plans["mean"] <= singles[0] | singles[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scan", "--pairs", "seg:ae", "--data", "toy"], "at least two RECIPIENT:DONOR pairs"),
        (["scan", "--pairs", "seg:ae,segae", "--data", "toy"], "--pairs item 'segae': write RECIPIENT:DONOR"),
        (["scan", "seg", "ae", "--pairs", "seg:ae,seg:ae", "--data", "toy"], "not both"),
        (["scan", "--data", "toy"], "give RECIPIENT DONOR, or --pairs"),
    ],
)
def test_bad_pairs_are_one_line(lab, cli, argv: list[str], message: str) -> None:
    make_lab(lab)
    code, _, err = cli("--lab", str(lab.root), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
