"""Evaluation on a hand-made model whose predictions are known: Dice, MSE/PSNR, NIfTI output."""

from __future__ import annotations

import dataclasses
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn
from toydata import SPACING, toy_slices, write_toy

from reuse_console.engine.evaluation.evaluate import eval_batches, evaluate_ae, evaluate_checkpoint, evaluate_seg
from reuse_console.engine.models.registry import save_model
from reuse_console.store.checkpoints import CheckpointMeta
from reuse_console.store.errors import UserError


class Nearest(nn.Module):
    """Predicts the class whose value is nearest the pixel: logits -(x - k)^2, k = 0..3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.arange(4, dtype=x.dtype, device=x.device).view(1, 4, 1, 1)
        return -((x - k) ** 2)


def _label_images(seed: int = 0):
    """Slices whose image is the label plus noise, so Nearest gets most pixels right, not all."""
    s = toy_slices(n_subjects=5, per_subject=3, seed=seed)
    rng = np.random.default_rng(seed)
    noisy = s.labels.astype(np.float32) + rng.normal(0, 0.35, s.labels.shape).astype(np.float32)
    s = dataclasses.replace(s, images=noisy, split=["train", "val", "train", "val", "val"])
    return s


def _dice_sets(pred: np.ndarray, ref: np.ndarray, c: int) -> float:
    p, g = pred == c, ref == c
    if not p.any() and not g.any():
        return 1.0
    return 2 * float((p & g).sum()) / float(p.sum() + g.sum())


def test_eval_batches_cover_the_split_in_subject_order() -> None:
    s = _label_images()
    batches, names = eval_batches(s, "val", batch=4)
    assert names == ["patient002", "patient004", "patient005"]
    subjects = torch.cat([b.subject for b in batches]).tolist()
    assert subjects == sorted(subjects) and len(subjects) == 9
    images = torch.cat([b.images for b in batches])
    assert images.shape == (9, 1, 64, 64) and images.dtype == torch.float32
    assert batches[0].labels.dtype == torch.int64
    expected = s.images[np.isin(s.subject, [1, 3, 4])]
    assert np.array_equal(images[:, 0].numpy(), expected)


def test_evaluate_seg_matches_per_subject_dice_by_hand() -> None:
    s = _label_images()
    batches, names = eval_batches(s, "val", batch=4)
    result = evaluate_seg(Nearest(), batches, names, s.classes, s.present, torch.device("cpu"))
    pred = np.clip(np.rint(s.images), 0, 3).astype(np.int64)  # what Nearest predicts
    for i, subj in enumerate([1, 3, 4]):
        rows = s.subject == subj
        for c in range(4):
            assert result.per_subject[i, c] == pytest.approx(_dice_sets(pred[rows], s.labels[rows], c))
    assert 0.3 < result.dice_fg < 1.0  # noise makes it imperfect


def test_evaluate_ae_mse_and_psnr() -> None:
    s = _label_images()
    batches, _ = eval_batches(s, "val", batch=4)
    val = s.images[np.isin(s.subject, [1, 3, 4])]

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 4, *x.shape[2:])

    class Copy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.repeat(1, 4, 1, 1)

    got = evaluate_ae(Zero(), batches, torch.device("cpu"))
    mse = float(np.mean(val.astype(np.float64) ** 2))
    assert got["mse"] == pytest.approx(mse, rel=1e-6)
    assert got["psnr"] == pytest.approx(10 * math.log10((val.max() - val.min()) ** 2 / mse), rel=1e-6)
    assert evaluate_ae(Copy(), batches, torch.device("cpu"))["mse"] == 0.0


def _save_toy_checkpoint(lab, task: str = "seg", size: int = 64) -> str:
    from reuse_console.engine.models.registry import build_model, default_config

    torch.manual_seed(0)
    config = default_config("unet", 1, 4, base_width=4)
    meta = CheckpointMeta(
        arch="unet",
        arch_config=config,
        task=task,
        data="toy",
        classes=["background", "RV", "MYO", "LV"],
        extra={"size": size},
    )
    save_model(lab, f"toy-{task}", build_model("unet", config), meta)
    return f"toy-{task}"


def test_evaluate_checkpoint_json_shape_and_absent_classes(lab) -> None:
    write_toy(lab, present=[True, False, True, False])
    ref = _save_toy_checkpoint(lab)
    out = evaluate_checkpoint(lab, ref, device="cpu")
    assert out["task"] == "seg" and out["data"] == "toy" and out["subjects"] == ["patient004"]
    assert set(out["dice"]) == {"background", "RV", "MYO", "LV"}
    assert out["dice"]["RV"] is None and out["dice"]["LV"] is None
    assert out["absent"] == ["RV", "LV"]
    assert isinstance(out["dice"]["MYO"], float) and isinstance(out["dice_fg"], float)
    assert set(out["per_subject"]) == {"patient004"}


def test_evaluate_checkpoint_ae(lab) -> None:
    write_toy(lab)
    out = evaluate_checkpoint(lab, _save_toy_checkpoint(lab, "ae"), device="cpu")
    assert out["task"] == "ae" and out["mse"] > 0 and math.isfinite(out["psnr"])


def test_save_predictions_writes_readable_nifti_with_spacing(lab, tmp_path) -> None:
    slices = write_toy(lab)
    ref = _save_toy_checkpoint(lab)
    out = evaluate_checkpoint(lab, ref, device="cpu", save_predictions=tmp_path / "pred")
    pred = nib.load(str(tmp_path / "pred" / "patient004_pred.nii.gz"))
    gt = nib.load(str(tmp_path / "pred" / "patient004_gt.nii.gz"))
    assert pred.shape == gt.shape == (64, 64, 4)  # x, y, slices
    row_mm, col_mm = SPACING
    assert pred.header.get_zooms()[:2] == pytest.approx((col_mm, row_mm))
    gt_slices = np.transpose(np.asarray(gt.dataobj), (2, 1, 0))
    assert np.array_equal(gt_slices, slices.labels[slices.subject == 3])
    # Dice recomputed from the two files equals the reported one
    p = np.asarray(pred.dataobj)
    g = np.asarray(gt.dataobj)
    for c in range(4):
        assert out["dice"][["background", "RV", "MYO", "LV"][c]] == pytest.approx(_dice_sets(p, g, c))
    assert len(out["files"]) == 2


def test_evaluate_checkpoint_resamples_to_the_training_size_and_refuses_mismatched_classes(lab) -> None:
    write_toy(lab)
    out = evaluate_checkpoint(lab, _save_toy_checkpoint(lab, size=32), device="cpu")
    assert out["size"] == 32
    from reuse_console.engine.data.slices import write_slices

    three = dataclasses.replace(toy_slices(name="three"), classes=["background", "a", "b"], present=[True] * 3)
    three.labels[three.labels == 3] = 2
    write_slices(lab.path("datasets", "three"), three, source={"format": "toy"})
    with pytest.raises(UserError, match="predicts 4 classes"):
        evaluate_checkpoint(lab, "toy-seg", data="three", device="cpu")
