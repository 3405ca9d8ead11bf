"""`scan --align` and `swap --align` from the command line: the aligned donor is recorded in the scan."""

from __future__ import annotations

import json

from predict_lab import permuted_copy
from swap_lab import make_lab

from reuse_console.engine.swaps.scan_store import load_scan


def test_cli_scan_and_swap_take_align(lab, cli) -> None:
    make_lab(lab)
    permuted_copy(lab, "seg", "perm")
    at = ["--lab", str(lab.root), "--data", "toy", "--device", "cpu", "--progress", "none"]
    code, out, err = cli("scan", "seg", "perm", "--layers", "1-2", "--kinds", "W", "--align", "--json", *at)
    assert code == 0, err
    result = json.loads(out)
    assert result["name"] == "seg-vs-perm-aligned"
    assert load_scan(lab, result["name"]).options["align"] == "weights"
    code, out, err = cli("swap", "seg", "perm", "--layers", "1-5", "--kinds", "W,RM", "--align", "--json", *at)
    assert code == 0, err
    swap = json.loads(out)
    assert swap["name"] == "swap-seg-vs-perm-aligned"
    assert load_scan(lab, swap["name"]).options["align"] == "weights"
    # the aligned donor is the recipient itself: the swap changes no Dice
    assert swap["variants"][0]["dice"] == swap["baseline"]["dice"]
