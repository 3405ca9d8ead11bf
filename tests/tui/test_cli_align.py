"""`reuse-console align` as a user runs it: JSON, the stored checkpoint used by rmse/swap/scan/plan,
and two models trained from different seeds coming closer on every layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from swap_lab import make_checkpoint, make_lab
from toydata import write_toy

TINY = ["--arch-config", '{"base_width": 4}', "--batch", "4", "--device", "cpu"]


def test_align_json_then_rmse_swap_scan_plan_use_it(lab, cli) -> None:
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=5)
    root = ["--lab", str(lab.root)]
    code, out, err = cli(*root, "align", "seg2", "--to", "seg", "--data", "toy", "--name", "al", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["name"] == "al" and result["method"] == "weights" and result["groups"] == 22
    assert result["max_output_difference"] <= 1e-5
    raw = sum(r["rmse_raw"] for r in result["rmse"])
    assert sum(r["rmse_aligned"] for r in result["rmse"]) < raw
    code, out, err = cli(*root, "align", "seg2", "--to", "seg", "--method", "activations", "--progress", "none")
    assert code == 0, err
    assert "RMSE to seg" in out and "stored as checkpoint seg2-to-seg" in err
    code, out, err = cli(*root, "rmse", "seg", "seg2", "al", "--json")
    assert code == 0, err
    code, out, err = cli(*root, "swap", "seg", "al", "--data", "toy", "--layers", "1-3", "--kinds", "RM", "--json")
    assert code == 0, err
    code, out, err = cli(*root, "scan", "seg", "al", "--data", "toy", "--layers", "1", "--kinds", "RM", "--name", "s")
    assert code == 0, err
    code, out, err = cli(*root, "plan", "--scan", "s", "--name", "p")
    assert code == 0, err
    code, out, err = cli(*root, "align", "--help")
    assert code == 0 and "Example: reuse-console align" in out


@pytest.mark.slow
def test_models_from_two_seeds_come_closer_on_every_layers_weights(lab, cli) -> None:
    """Two UNets trained 2 epochs from seeds 1 and 2: aligned conv-weight RMSE below raw on every
    layer, and the summed distance over all tensors down. Weight matching maximises the summed inner
    product, dominated by the conv weights, so a small BN statistic or bias may still move away: the
    test prints those. Swap Dice from the raw and the aligned donor is measured and printed (run
    with -s), not asserted."""
    write_toy(lab, n_subjects=6, per_subject=6)
    root = ["--lab", str(lab.root)]
    for seed in (1, 2):
        code, _, err = cli(
            *root,
            "train",
            "--data",
            "toy",
            "--epochs",
            "2",
            "--seed",
            str(seed),
            "--name",
            f"s{seed}",
            *TINY,
            "--progress",
            "none",
        )
        assert code == 0, err
    code, out, err = cli(*root, "align", "s2", "--to", "s1", "--name", "s2a", "--json", "--progress", "none")
    assert code == 0, err
    result = json.loads(out)
    w_raw = {r["layer"]: r["rmse_raw"] for r in result["rmse"] if r["kind"] == "W" and r["layer"] != "head"}
    w_aligned = {r["layer"]: r["rmse_aligned"] for r in result["rmse"] if r["kind"] == "W" and r["layer"] != "head"}
    worse = {layer: (w_raw[layer], w_aligned[layer]) for layer in w_raw if not w_aligned[layer] < w_raw[layer]}
    assert not worse, f"layers whose conv weights alignment did not bring closer: {worse}"
    assert result["objective_after"] > result["objective_before"]  # the summed distance over all tensors fell
    kinds_worse = [(r["layer"], r["kind"]) for r in result["rmse"] if r["rmse_aligned"] > r["rmse_raw"]]
    rose = f"{len(kinds_worse)} of {len(result['rmse'])} (layer, kind) RMSEs rose (BN statistics, biases)"
    notes = [f"{rose}: {kinds_worse}"]
    notes.append("mean foreground Dice drop of single-tensor swaps into s1, per kind: raw donor s2 | aligned s2a")
    drops: dict[str, dict[str, list[float]]] = {}
    for donor in ("s2", "s2a"):
        code, out, err = cli(*root, "scan", "s1", donor, "--data", "toy", "--json", "--progress", "none")
        assert code == 0, err
        scan = json.loads(out)
        base = _fg(scan["baseline"]["dice"])
        for v in scan["variants"]:
            drops.setdefault(v["kind"], {}).setdefault(donor, []).append(base - _fg(v["dice"]))
    for kind, by_donor in drops.items():
        raw, aligned = np.mean(by_donor["s2"]), np.mean(by_donor["s2a"])
        notes.append(f"  {kind}: {raw:.3f} | {aligned:.3f}  ({len(by_donor['s2'])} tensors)")
    every = [np.mean([d for k in drops for d in drops[k][donor]]) for donor in ("s2", "s2a")]
    notes.append(f"  all: {every[0]:.3f} | {every[1]:.3f}")
    print("\n" + "\n".join(notes))  # after the last cli call: the fixture reads stdout


def _fg(dice: dict[str, float | None]) -> float:
    values = [v for c, v in dice.items() if c != "background" and v is not None]
    return float(np.mean(values))


def test_rmse_align_on_the_fly_equals_the_stored_alignment(lab, cli) -> None:
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=5)
    root = ["--lab", str(lab.root)]
    assert cli(*root, "align", "seg2", "--to", "seg", "--data", "toy", "--name", "al")[0] == 0
    code, out, err = cli(*root, "rmse", "seg", "al", "--json")
    assert code == 0, err
    stored = json.loads(out)["pairs"][0]["rows"]
    code, out, err = cli(*root, "rmse", "seg", "seg2", "--align", "--json")
    assert code == 0, err
    on_the_fly = json.loads(out)
    assert on_the_fly["name"].startswith("rmse-aligned-")
    assert [r["rmse"] for r in on_the_fly["pairs"][0]["rows"]] == pytest.approx([r["rmse"] for r in stored])
