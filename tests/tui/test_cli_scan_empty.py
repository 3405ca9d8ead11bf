"""`scan --empty ignore --per volume` and `swap --empty ignore` from the command line: the JSON says
the rule and unit, leaves ignored cells null, and a plan from the scan judges the rule's means."""

from __future__ import annotations

import json

import numpy as np
from frames_lab import make_frames
from swap_lab import make_checkpoint


def test_scan_and_swap_take_the_rule_and_the_unit(lab, cli) -> None:
    slices = make_frames(lab)
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    base = ["--data", "frames", "--lab", str(lab.root), "--device", "cpu", "--progress", "none", "--json"]
    code, out, err = cli("scan", "seg", "ae", "--layers", "1-3", "--kinds", "RM,W", "--empty", "ignore",
                         "--per", "volume", "--name", "sv", *base)  # fmt: skip
    assert code == 0, err
    scan = json.loads(out)
    assert scan["empty"] == "ignore" and scan["dice_per"] == "volume"
    per_volume = scan["baseline"]["per_subject"]
    val = [slices.volumes[v] for v in range(4, 8)]
    assert list(per_volume) == val
    # RV has no reference in patient002_ES and patient003: null there, a number where it has one
    assert [per_volume[v]["RV"] is None for v in val] == [False, True, True, True]
    assert scan["baseline"]["dice"]["RV"] == per_volume[val[0]]["RV"]  # the mean of what is left
    code, out, err = cli("plan", "--scan", "sv", "--max-dice-drop", "0.05", "--name", "p", "--lab", str(lab.root),
                         "--json")  # fmt: skip
    assert code == 0, err
    assert {k: json.loads(out)["provenance"].get(k) for k in ("empty", "per")} == {"empty": "ignore", "per": "volume"}
    code, out, err = cli("show", "sv", "--lab", str(lab.root))
    shown = " ".join(out.split())
    assert code == 0 and "[Dice per volume; classes with an empty reference left out (--empty ignore)]" in shown
    code, out, err = cli("scan", "seg", "ae", "--layers", "1-3", "--kinds", "RM,W", "--name", "s1", *base)
    assert code == 0, err
    code, out, err = cli("plan", "--scan", "sv", "--scan", "s1", "--lab", str(lab.root))
    assert code == 2 and "count Dice differently" in err  # one rule per plan: the drops would not compare
    code, out, err = cli("swap", "seg", "ae", "--layers", "1", "--kinds", "RM,RV", "--empty", "ignore", *base)
    assert code == 0, err
    swap = json.loads(out)
    assert swap["empty"] == "ignore" and swap["dice_per"] == "subject"
    assert swap["baseline"]["per_subject"]["patient003"]["RV"] is None
    assert np.isfinite(swap["baseline"]["per_subject"]["patient002"]["RV"])
    code, out, err = cli("scan", "seg", "ae", "--empty", "zero", *base)
    assert code == 2 and err.strip().splitlines() == [
        "error: --empty zero: choose one (MONAI ignore_empty=False) or ignore (ignore_empty=True)"
    ]
