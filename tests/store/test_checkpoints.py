"""Checkpoint files: tensors, metadata and extra groups come back exactly as written."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch

from reuse_console.store.checkpoints import (
    CheckpointMeta,
    meta_dict,
    read_checkpoint,
    read_extra,
    read_meta,
    write_checkpoint,
)
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5, stamp
from reuse_console.store.lab import Lab


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1))


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        arch="unet",
        arch_config={"in_channels": 1, "out_channels": 4, "base": 8},
        task="seg",
        data="acdc",
        classes=["background", "RV", "MYO", "LV"],
        epoch=3,
        metrics={"dice": {"RV": 0.5, "MYO": None, "LV": 0.75}, "dice_fg": 0.625},
        run="unet-acdc",
        seed=7,
        extra={"note": "x"},
    )


def test_checkpoint_round_trip(lab: Lab) -> None:
    model = _model()
    state = model.state_dict()
    opt = {"state.0.exp_avg": torch.randn(4, 1, 3, 3), "param_groups.0.lr": torch.tensor(0.001, dtype=torch.float64)}
    path = write_checkpoint(lab.path("checkpoints", "unet-acdc"), state, _meta(), extra_groups={"optimizer": opt})

    back, meta = read_checkpoint(path)
    assert meta == _meta()
    assert read_meta(path) == _meta()
    assert set(back) == set(state)
    for key, tensor in state.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key
    fresh = _model()
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    fresh.load_state_dict(back)
    x = torch.randn(2, 1, 8, 8)
    model.eval()
    fresh.eval()
    assert torch.equal(model(x), fresh(x))

    extra = read_extra(path, "optimizer")
    assert extra is not None and set(extra) == set(opt)
    assert torch.equal(extra["state.0.exp_avg"], opt["state.0.exp_avg"])
    assert extra["param_groups.0.lr"].dtype == torch.float64 and extra["param_groups.0.lr"].item() == 0.001
    assert read_extra(path, "absent") is None

    (entry,) = lab.entries("checkpoints")
    assert entry.summary == {"arch": "unet", "task": "seg", "data": "acdc", "epoch": 3, "dice_fg": 0.625}
    assert meta_dict(meta)["metrics"]["dice"]["MYO"] is None


def test_checkpoint_layout_is_plain_hdf5(lab: Lab) -> None:
    path = write_checkpoint(lab.path("checkpoints", "c"), _model().state_dict(), _meta())
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "checkpoint" and f.attrs["arch"] == "unet"
        assert f["params/1/running_var"].shape == (4,)
        assert f["params/0/weight"].attrs["dtype"] == "float32"


def test_reading_another_kind_as_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    with atomic_h5(path) as f:
        stamp(f, "dataset")
    with pytest.raises(UserError, match="is not a checkpoint"):
        read_meta(path)
