"""A 3D model (MONAI UNet, spatial_dims 3) end to end through the CLI, checked against a naive path.

The naive path is written here from scratch: each validation subject's slices stacked in order,
zero-padded (or cut into blocks of --depth), run through the model, the padding cropped off, and
Dice computed by MONAI's `compute_dice` (another library's Dice) on the whole volume.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice
from toydata import toy_slices

from reuse_console.engine.data.slices import write_slices
from reuse_console.engine.models.registry import build_model
from reuse_console.store.checkpoints import read_checkpoint, read_meta

pytestmark = pytest.mark.slow

UNET3D = "monai.networks.nets:UNet"
CONFIG = {"spatial_dims": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0, "norm": "batch"}
RUN = ["--epochs", "1", "--batch", "8", "--device", "cpu", "--progress", "none", "--no-augment"]


def _write_data(lab) -> None:
    """5 subjects of 6 slices at 32 px (no volume index: a subject is one volume); 2 for validation."""
    s = toy_slices(n_subjects=5, per_subject=6, size=32, name="vol")
    s.split = ["train", "train", "train", "val", "val"]
    write_slices(lab.path("datasets", "vol"), s, source={"format": "toy"})


def _train(cli, lab, name: str, *extra: str) -> None:
    code, _, err = cli(
        "--lab", str(lab.root), "train", "--data", "vol", "--arch", UNET3D, "--arch-config", json.dumps(CONFIG),
        "--name", name, *RUN, *extra,
    )  # fmt: skip
    assert code == 0, err


def _naive_dice(lab, ckpt: str, depth: int, state: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """Mean Dice per class over validation subjects, by the naive path (see the module doc)."""
    stored, meta = read_checkpoint(lab.path("checkpoints", ckpt))
    config = {k: v for k, v in meta.arch_config.items() if k != "adapter"}
    model = build_model(meta.arch, config)
    model.load_state_dict(state or stored)
    model.eval()
    data = toy_slices(n_subjects=5, per_subject=6, size=32, name="vol")
    per_subject = []
    for subject in (3, 4):
        images = data.images[data.subject == subject]  # (6, 32, 32), in stored order
        labels = data.labels[data.subject == subject]
        n = len(images)
        padded = np.zeros((-(-n // depth) * depth, 32, 32), np.float32)
        padded[:n] = images
        blocks = torch.from_numpy(padded).reshape(-1, depth, 32, 32)[:, None]  # (blocks, 1, D, H, W)
        with torch.no_grad():
            pred = model(blocks).argmax(1).reshape(-1, 32, 32)[:n]
        onehot = lambda x: torch.nn.functional.one_hot(torch.as_tensor(x).long(), 4).permute(3, 0, 1, 2)[None]  # noqa: E731
        per_subject.append(compute_dice(onehot(pred), onehot(labels), include_background=True, ignore_empty=False)[0])
    mean = torch.stack(per_subject).mean(0).tolist()
    return dict(zip(["background", "RV", "MYO", "LV"], mean))


def test_a_3d_unet_trains_evaluates_swaps_scans_and_compares(lab, cli) -> None:
    _write_data(lab)
    L = ("--lab", str(lab.root))
    _train(cli, lab, "seg3")
    _train(cli, lab, "ae3", "--task", "ae")
    assert read_meta(lab.path("checkpoints", "seg3")).extra["depth"] == 16  # whole volumes: 6 -> 16

    code, out, err = cli(*L, "layers", "seg3", "--json")
    assert code == 0, err
    layers = json.loads(out)
    assert layers[0]["shapes"]["W"] == [4, 1, 3, 3, 3] and layers[0]["kinds"] == ["RM", "RV", "RW", "RB", "W", "B"]

    code, out, err = cli(*L, "eval", "seg3", "--json")
    assert code == 0, err
    assert json.loads(out)["dice"] == pytest.approx(_naive_dice(lab, "seg3", 16), abs=1e-6)
    code, out, err = cli(*L, "eval", "ae3", "--json")
    assert code == 0 and json.loads(out)["mse"] > 0, err

    # one swap, checked against a state dict built by hand and the naive path
    code, out, err = cli(*L, "swap", "seg3", "ae3", "--data", "vol", "--layers", "1", "--kinds", "RM,RW", "--json")
    assert code == 0, err
    (variant,) = json.loads(out)["variants"]
    recipient, _ = read_checkpoint(lab.path("checkpoints", "seg3"))
    donor, _ = read_checkpoint(lab.path("checkpoints", "ae3"))
    norm = layers[0]["modules"][1]
    hand = {
        **recipient,
        f"{norm}.running_mean": donor[f"{norm}.running_mean"],
        f"{norm}.weight": donor[f"{norm}.weight"],
    }
    assert variant["dice"] == pytest.approx(_naive_dice(lab, "seg3", 16, hand), abs=1e-6)

    code, out, err = cli(*L, "scan", "seg3", "ae3", "--data", "vol", "--json")
    assert code == 0, err
    scan = json.loads(out)
    assert scan["engine"] == "partial" and len(scan["variants"]) == sum(len(x["kinds"]) for x in layers)
    code, out, err = cli(*L, "rmse", "seg3", "ae3", "--json")
    assert code == 0, err
    rows = json.loads(out)["pairs"][0]["rows"]
    got = next(r["rmse"] for r in rows if r["layer"] == 1 and r["kind"] == "W")
    key = f"{layers[0]['modules'][0]}.weight"
    want = float((recipient[key].double() - donor[key].double()).pow(2).mean().sqrt())
    assert got == pytest.approx(want, rel=1e-6)
    code, out, err = cli(*L, "bn", "seg3", "ae3")
    assert code == 0, err


def test_blocks_of_depth_tile_each_volume(lab, cli) -> None:
    """--depth 2: each 6-slice volume is three blocks; eval equals the naive path cut the same way."""
    _write_data(lab)
    _train(cli, lab, "d2", "--depth", "2")
    assert read_meta(lab.path("checkpoints", "d2")).extra["depth"] == 2
    code, out, err = cli("--lab", str(lab.root), "eval", "d2", "--json")
    assert code == 0, err
    assert json.loads(out)["dice"] == pytest.approx(_naive_dice(lab, "d2", 2), abs=1e-6)


def test_a_depth_the_model_cannot_take_is_refused_before_a_run_file(lab, cli) -> None:
    _write_data(lab)
    code, _, err = cli(
        "--lab", str(lab.root), "train", "--data", "vol", "--arch", UNET3D, "--arch-config", json.dumps(CONFIG),
        *RUN, "--depth", "3",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "3x32x32 block" in line and "--depth" in line, line
    assert not (lab.root / "runs").exists() or not any((lab.root / "runs").iterdir())
