"""`plan`, `train --init/--plan/--mode`, `grid` and `report` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from toydata import write_toy  # noqa: E402

from reuse_console.engine.models.layers import LayerIndex  # noqa: E402
from reuse_console.engine.models.registry import build_model, default_config, save_model  # noqa: E402
from reuse_console.engine.swaps.scan_store import write_scan  # noqa: E402
from reuse_console.engine.swaps.variants import ScanResult, plan_variants  # noqa: E402
from reuse_console.store.checkpoints import CheckpointMeta, read_meta  # noqa: E402

CLASSES = ["background", "RV", "MYO", "LV"]
TINY = {"base_width": 4}


@pytest.fixture
def scan_lab(lab):
    """An untrained recipient checkpoint and a scan of it where only layer 1 RM and layer 3 W hurt."""
    config = default_config("unet", 1, 4, **TINY)
    torch.manual_seed(0)
    model = build_model("unet", config)
    save_model(lab, "seg", model, CheckpointMeta(arch="unet", arch_config=config, task="seg"))
    index = LayerIndex.from_model(model, 1, 64)
    variants = plan_variants(index.layers, ("RM", "RV", "RW", "RB", "W", "B"), (1.0,))
    base = np.array([[0.99, 0.9, 0.8, 0.9]])
    dice = np.repeat(base[None], len(variants), axis=0)
    for i, v in enumerate(variants):
        if (v.layer, v.kind) in {("1", "RM"), ("3", "W")}:
            dice[i, 0, 2] -= 0.2  # MYO drops by 0.2
    write_scan(
        lab.path("scans", "sc"), ScanResult("sc", "seg", "ae", "toy", CLASSES, [True] * 4, ["a"], base, variants, dice)
    )
    return lab


def test_plan_infers_prints_and_stores(cli, scan_lab) -> None:
    lab = str(scan_lab.root)
    code, out, err = cli("plan", "--scan", "sc", "--name", "p", "--lab", lab)
    assert code == 0, err
    assert "not reusable: RM: 1; W: 3" in out
    assert "reused: 116 of 118 tensors (98.3%)" in out  # 18*6 + 4*2 + 2 = 118 tensors, 2 not reused
    assert "stored as plan p" in err
    code, out, _ = cli("plan", "show", "p", "--json", "--lab", lab)
    data = json.loads(out)
    assert code == 0 and data["not_reusable"] == "RM: 1; W: 3" and data["reused"] == 116
    assert data["provenance"]["scan"] == "sc"
    code, _, err = cli("plan", "--scan", "sc", "--name", "p", "--lab", lab)
    assert code == 2 and "already exists" in err


def test_plan_export_edit_import(cli, scan_lab, tmp_path) -> None:
    lab = str(scan_lab.root)
    cli("plan", "--scan", "sc", "--name", "p", "--lab", lab)
    toml = tmp_path / "p.toml"
    code, _, err = cli("plan", "export", "p", "--out", str(toml), "--lab", lab)
    assert code == 0 and toml.exists() and "wrote" in err
    text = toml.read_text()
    assert "RM = [1]\n" in text and "W = [3]\n" in text
    toml.write_text(text.replace("W = [3]\n", 'W = [3, "head"]\n'))
    code, out, err = cli("plan", "import", str(toml), "--name", "p2", "--lab", lab)
    assert code == 0, err
    assert "not reusable: RM: 1; W: 3,head" in out and "stored as plan p2" in err
    code, _, err = cli("plan", "export", "p", "--out", str(toml), "--lab", lab)
    assert code == 2 and "already exists" in err
    code, _, err = cli("plan", "--rmse", "x", "--lab", lab)
    assert code == 2 and "--max-rmse" in err


def test_train_with_a_frozen_plan(cli, scan_lab) -> None:
    lab = str(scan_lab.root)
    write_toy(scan_lab)
    cli("plan", "--scan", "sc", "--name", "p", "--lab", lab)
    code, _, err = cli(
        "train",
        "--data",
        "toy",
        "--arch-config",
        json.dumps(TINY),
        "--epochs",
        "1",
        "--batch",
        "4",
        "--no-augment",
        "--init",
        "seg",
        "--plan",
        "p",
        "--mode",
        "freeze",
        "--name",
        "fz",
        "--device",
        "cpu",
        "--progress",
        "none",
        "--lab",
        lab,
    )
    assert code == 0, err
    spec = read_meta(scan_lab.path("checkpoints", "fz")).extra["spec"]
    assert spec["init"] == "seg" and spec["plan"] == "p" and spec["mode"] == "freeze"
    assert len(spec["frozen"]) == 116
    code, _, err = cli(
        "train", "--data", "toy", "--init", "seg", "--plan", "p", "--mode", "thaw", "--device", "cpu", "--lab", lab
    )
    assert code == 2 and "--mode" in err


def test_grid_resume_and_report(cli, lab, tmp_path) -> None:
    write_toy(lab)
    study = tmp_path / "s.toml"
    study.write_text(
        'name = "cg"\ntarget = "toy"\nsubjects = [2]\nseeds = 2\n'
        "[train]\narch_config = { base_width = 4 }\nepochs = 1\nbatch = 4\naugment = false\n"
        '[[sources]]\nname = "random"\n'
    )
    root = str(lab.root)
    code, out, err = cli("grid", str(study), "--device", "cpu", "--progress", "none", "--json", "--lab", root)
    assert code == 0, err
    data = json.loads(out)
    assert [c["name"] for c in data["cells"]] == ["random-n2-s0", "random-n2-s1"]
    row = data["table"][0]
    assert row["seeds"] == 2 and row["source"] == "random"
    fg = [c["dice"]["fg"] for c in data["cells"]]
    assert row["mean"]["fg"] == pytest.approx(np.mean(fg))

    code, out, err = cli("grid", str(study), "--device", "cpu", "--progress", "jsonl", "--resume", "--lab", root)
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events[0]["info"]["to_train"] == 0
    assert [e["cell"] for e in events if e["type"] == "cell_done"] == ["random-n2-s0", "random-n2-s1"]
    code, _, err = cli("grid", str(study), "--device", "cpu", "--lab", root)
    assert code == 2 and "--resume" in err

    code, out, err = cli("report", "cg", "--out", str(tmp_path / "fig"), "--lab", root)
    assert code == 0, err
    assert sorted(Path(p).name for p in out.split()) == [
        "cg-dice.png",
        "cg-table.csv",
        "cg-table.md",
        "cg-table.png",
        "index.md",
    ]


def test_grid_user_errors(cli, lab, tmp_path) -> None:
    code, _, err = cli("grid", str(tmp_path / "none.toml"), "--lab", str(lab.root))
    assert code == 2 and "not found" in err
    study = tmp_path / "s.toml"
    study.write_text('target = "toy"\n[[sources]]\nname = "random"\n')
    if not torch.cuda.is_available():
        code, _, err = cli("grid", str(study), "--devices", "all", "--lab", str(lab.root))
        assert code == 2 and "no CUDA device" in err
