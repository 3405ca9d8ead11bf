"""A tiny training run: files written, rows recorded, best/last logic, tasks, subject choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from toydata import toy_slices, write_toy

from reuse_console.engine.core.events import EpochEnd, Finished, Started, StepEnd
from reuse_console.engine.data.batches import pick_subjects
from reuse_console.engine.training.train import TrainSpec, resume_training, train
from reuse_console.store.checkpoints import read_checkpoint, read_extra, read_meta
from reuse_console.store.errors import UserError
from reuse_console.store.runs import read_run

TINY = {"base_width": 4}


def _spec(**kw) -> TrainSpec:
    base = {"data": "toy", "arch_config": TINY, "epochs": 2, "batch": 4, "seed": 1}
    return TrainSpec(**{**base, **kw})


def test_tiny_run_writes_run_file_and_checkpoints(lab) -> None:
    write_toy(lab)  # 3 training subjects x 4 slices = 12 slices -> 3 steps per epoch at batch 4
    events = []
    result = train(lab, _spec(), device="cpu", report=events.append)
    assert result.name == "unet-seg-toy"
    assert result.run_path == lab.path("runs", "unet-seg-toy")
    assert result.best_path.exists() and result.last_path.exists()
    assert result.last_path.name == "unet-seg-toy.last.h5"

    history = read_run(result.run_path)
    assert history.status == "finished"
    assert history.steps["epoch"].tolist() == [1, 1, 1, 2, 2, 2]
    assert history.steps["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.all(np.isfinite(history.steps["loss"]))
    assert history.epochs["epoch"].tolist() == [1.0, 2.0]
    for col in (
        "train_loss",
        "seconds",
        "images_per_s",
        "memory_mb",
        "val_dice_fg",
        "val_dice_background",
        "val_dice_RV",
        "val_dice_MYO",
        "val_dice_LV",
    ):
        assert np.all(np.isfinite(history.epochs[col])), col
    # the epoch's train loss is the mean of its step losses
    assert history.epochs["train_loss"][0] == pytest.approx(history.steps["loss"][:3].mean())
    assert history.meta["train_subjects"] == ["patient001", "patient002", "patient003"]

    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[-1] is Finished and kinds.count(EpochEnd) == 2
    assert StepEnd in kinds
    assert events[-1].result == "unet-seg-toy"


def test_best_is_the_highest_val_dice_and_last_holds_the_optimizer(lab) -> None:
    write_toy(lab)
    result = train(lab, _spec(epochs=3, lr=3e-3), device="cpu")
    history = read_run(result.run_path)
    dice = history.epochs["val_dice_fg"]
    best_epoch = int(np.argmax(dice)) + 1  # first epoch with the highest value
    assert result.best_epoch == best_epoch
    assert history.epochs["best"].tolist() == [float(dice[i] > dice[:i].max(initial=-1)) for i in range(3)]
    best, last = read_meta(result.best_path), read_meta(result.last_path)
    assert best.epoch == best_epoch and last.epoch == 3
    assert best.metrics["dice_fg"] == pytest.approx(dice[best_epoch - 1])
    assert set(best.metrics["dice"]) == {"background", "RV", "MYO", "LV"}
    assert read_extra(result.best_path, "optimizer") is None
    optimizer = read_extra(result.last_path, "optimizer")
    assert optimizer and any(k.endswith("exp_avg") for k in optimizer)
    assert last.extra["global_step"] == 9 and last.extra["spec"]["epochs"] == 3


def test_ae_has_the_same_tensor_shapes_as_seg(lab) -> None:
    write_toy(lab)
    seg = train(lab, _spec(epochs=1), device="cpu")
    ae = train(lab, _spec(epochs=1, task="ae"), device="cpu")
    seg_state, _ = read_checkpoint(seg.best_path)
    ae_state, ae_meta = read_checkpoint(ae.best_path)
    assert {k: v.shape for k, v in seg_state.items()} == {k: v.shape for k, v in ae_state.items()}
    assert ae_meta.task == "ae" and set(ae_meta.metrics) >= {"mse", "psnr"}
    history = read_run(ae.run_path)
    assert history.epochs["val_mse"][0] > 0 and np.isfinite(history.epochs["val_psnr"][0])


def test_names_are_unique_and_an_existing_name_is_refused(lab) -> None:
    write_toy(lab)
    spec = _spec(epochs=1, augment=False)
    assert train(lab, spec, device="cpu").name == "unet-seg-toy"
    assert train(lab, spec, device="cpu").name == "unet-seg-toy-2"
    with pytest.raises(UserError, match="already exists"):
        train(lab, dataclasses.replace(spec, name="unet-seg-toy"), device="cpu")
    with pytest.raises(UserError, match="already finished"):
        resume_training(lab, "unet-seg-toy", device="cpu")


def test_subjects_are_picked_by_seed_from_the_training_split() -> None:
    s = toy_slices(n_subjects=12, per_subject=1)  # 11 training subjects, 1 val
    a = pick_subjects(s, 5, seed=3)
    assert a == pick_subjects(s, 5, seed=3) and a == sorted(a) and len(set(a)) == 5
    assert a != pick_subjects(s, 5, seed=4)
    assert set(a) <= set(s.subjects_in("train"))
    assert pick_subjects(s, None, seed=0) == s.subjects_in("train")
    with pytest.raises(UserError, match="11 training subjects"):
        pick_subjects(s, 12, seed=0)


def test_subjects_option_limits_the_training_slices(lab) -> None:
    write_toy(lab, n_subjects=5)
    result = train(lab, _spec(epochs=1, subjects=2), device="cpu")
    history = read_run(result.run_path)
    assert len(history.meta["train_subjects"]) == 2
    assert history.steps["epoch"].size == 2  # 2 subjects x 4 slices / batch 4


def test_frozen_tensors_keep_their_initial_values(lab) -> None:
    write_toy(lab)
    init = {"enc1.bn1.running_mean": torch.full((4,), 0.5), "enc1.conv1.weight": torch.ones(4, 1, 3, 3)}
    spec = _spec(epochs=1, frozen=list(init))
    result = train(lab, spec, device="cpu", init_state=init)
    state, _ = read_checkpoint(result.last_path)
    for key, value in init.items():
        assert torch.equal(state[key], value), key
    assert not torch.equal(state["enc1.bn2.running_mean"], torch.zeros(4))  # the rest trained


def test_bad_options_are_user_errors(lab) -> None:
    write_toy(lab)
    with pytest.raises(UserError, match="unknown task"):
        train(lab, _spec(task="cls"), device="cpu")
    with pytest.raises(UserError, match="--epochs"):
        train(lab, _spec(epochs=0), device="cpu")
    with pytest.raises(UserError, match="no data set"):
        train(lab, _spec(data="nope"), device="cpu")
    with pytest.raises(UserError, match="fp16"):
        train(lab, _spec(), device="cpu", precision="fp16")


def test_bf16_trains_on_cpu(lab) -> None:
    write_toy(lab)
    result = train(lab, _spec(epochs=1), device="cpu", precision="bf16")
    assert np.isfinite(read_run(result.run_path).epochs["train_loss"][0])
    assert read_meta(result.last_path).extra["precision"] == "bf16"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_training(lab, precision: str) -> None:
    write_toy(lab)
    result = train(lab, _spec(epochs=1), device="cuda", precision=precision)
    assert np.isfinite(read_run(result.run_path).epochs["train_loss"][0])
