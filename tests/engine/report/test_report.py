"""Reports: every figure and table file from hand-built lab objects, and the table numbers by hand."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np
import pytest
import torch

from reuse_console.engine.compare.rmse import run_rmse
from reuse_console.engine.grids.experiment import CellRecord, Experiment, load_experiment, write_experiment
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config, save_model
from reuse_console.engine.report.build import make_report, scan_arrays
from reuse_console.engine.reuse.plans import infer_plan, save_plan
from reuse_console.engine.swaps.scan_store import write_scan
from reuse_console.engine.swaps.variants import ScanResult, plan_variants
from reuse_console.store.checkpoints import CheckpointMeta
from reuse_console.store.errors import UserError

CLASSES = ["background", "RV", "MYO", "LV"]
PNG = b"\x89PNG\r\n\x1a\n"


def _model(seed: int):
    torch.manual_seed(seed)
    model = build_model("unet", default_config("unet", 1, 4, base_width=4))
    with torch.no_grad():  # give the BN layers distinct running statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model


@pytest.fixture
def report_lab(lab):
    """Two checkpoints, a scan of one against the other, their comparison, a plan and an experiment."""
    index = LayerIndex.from_model(_model(0), 1, 64)
    for name, seed in (("seg", 0), ("ae", 1)):
        meta = CheckpointMeta(arch="unet", arch_config=default_config("unet", 1, 4, base_width=4), task="seg")
        save_model(lab, name, _model(seed), meta)
    variants = plan_variants(index.layers, ("RM", "RV", "RW", "RB", "W", "B"), (1.0,))
    rng = np.random.default_rng(0)
    base = np.array([[0.99, 0.8, 0.7, 0.9], [0.98, 0.7, 0.6, 0.8]])
    dice = np.clip(base[None] - rng.uniform(0, 0.3, (len(variants), 2, 4)), 0, 1)
    scan = ScanResult("sc", "seg", "ae", "acdc", CLASSES, [True] * 4, ["a", "b"], base, variants, dice)
    write_scan(lab.path("scans", "sc"), scan)
    run_rmse(lab, ["seg", "ae"], name="cmp")
    save_plan(lab, infer_plan(scan, max_dice_drop=0.1, layers=index, name="pl", arch="unet"))
    cells = []
    for source, mode in (("random", "scratch"), ("a2s", "freeze"), ("a2s", "finetune")):
        for n in (2, 5):
            for seed in (0, 1, 2):
                d = np.full((2, 4), 0.5 + 0.1 * seed + 0.01 * n + (0.05 if mode == "freeze" else 0))
                d[1] += 0.02
                name = (source if mode == "scratch" else f"{source}-{mode}") + f"-n{n}-s{seed}"
                cells.append(CellRecord(name, source, mode, n, seed, f"e.{name}.last", d))
    exp = Experiment(
        "e",
        "acdc",
        CLASSES,
        [True] * 4,
        ["a", "b"],
        cells,
        random_source="random",
        reference="seg",
        rmse_layers=[layer.name for layer in index.layers],
        rmse_index=[layer.index for layer in index.layers],
        rmse_kinds=["RM", "RV", "RW", "RB", "W", "B"],
        rmse=np.abs(rng.normal(0, 0.1, (len(cells), len(index.layers), 6))),
    )
    write_experiment(lab.path("experiments", "e"), exp)
    return lab


@pytest.mark.slow
def test_report_writes_every_figure_and_table(report_lab, tmp_path) -> None:
    out = tmp_path / "fig"
    files = make_report(report_lab, ["sc", "cmp", "pl", "experiments/e"], out)
    names = sorted(p.name for p in files)
    assert names == sorted(
        [
            "sc-dice.png",
            "cmp-rmse.png",
            "cmp-bn.png",
            "pl-plan.png",
            "e-table.png",
            "e-table.csv",
            "e-table.md",
            "e-dice.png",
            "e-rmse-n2.png",
            "e-rmse-n5.png",
            "index.md",
        ]
    )
    for path in files:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG) and len(data) > 10_000, path.name
    index = (out / "index.md").read_text()
    assert "![Dice per layer and kind](sc-dice.png)" in index and "## Experiment e" in index


def test_experiment_table_csv_by_hand(report_lab) -> None:
    exp = load_experiment(report_lab, "e")
    rows = list(csv.DictReader(io.StringIO(exp.table_csv())))
    assert [(r["source"], r["mode"], r["subjects"]) for r in rows] == [
        ("random", "scratch", "2"),
        ("random", "scratch", "5"),
        ("a2s", "freeze", "2"),
        ("a2s", "freeze", "5"),
        ("a2s", "finetune", "2"),
        ("a2s", "finetune", "5"),
    ]
    # freeze, n=2: cell means over the two subjects are 0.5+0.1s+0.02+0.05+0.01 for seeds 0, 1, 2
    freeze2 = rows[2]
    seeds = [0.58, 0.68, 0.78]
    assert float(freeze2["RV_mean"]) == pytest.approx(np.mean(seeds))
    assert float(freeze2["RV_std"]) == pytest.approx(0.1)  # sample std of 0.58, 0.68, 0.78
    assert float(freeze2["RV_diff"]) == pytest.approx(0.05)  # random n=2 is 0.05 lower
    assert float(freeze2["fg_mean"]) == pytest.approx(np.mean(seeds))
    assert rows[0]["RV_diff"] == ""  # the random rows have no difference to themselves
    md = exp.table_markdown()
    # every seed is exactly 0.05 above its random-init twin: the paired interval is [0.05, 0.05], flagged *
    assert float(freeze2["RV_diff_low95"]) == pytest.approx(0.05) == float(freeze2["RV_diff_high95"])
    assert "| a2s | freeze | 2 | 3 | 0.680 ± 0.100 (+0.050*)" in md


def test_scan_arrays_put_each_variant_in_its_layer_and_kind(report_lab) -> None:
    from reuse_console.engine.swaps.scan_store import load_scan

    scan = load_scan(report_lab, "sc")
    layers, kinds, dice = scan_arrays(scan)
    assert layers[:3] == ["1", "2", "3"] and layers[-1] == "head" and kinds == ["RM", "RV", "RW", "RB", "W", "B"]
    i = next(k for k, v in enumerate(scan.variants) if v.layer == "3" and v.kind == "RV")
    assert np.allclose(dice[1, 2], scan.dice[i].mean(axis=0))
    assert np.isnan(dice[0, layers.index("head")]).all()  # the head has no BN


def test_report_refuses_other_objects_and_missing_matplotlib(report_lab, tmp_path, monkeypatch) -> None:
    with pytest.raises(UserError, match="cannot report on a checkpoint"):
        make_report(report_lab, ["seg"], tmp_path)
    with pytest.raises(UserError, match="no object"):
        make_report(report_lab, ["nothing"], tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UserError, match="matplotlib"):
        make_report(report_lab, ["sc"], tmp_path)
