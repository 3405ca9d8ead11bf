"""Evaluation of a model on a split: seg Dice per class per subject (3D), ae MSE and PSNR.

Batches are built once in a fixed order (subjects in data-set order, each subject's slices in
order), so every evaluation of every variant sees the same pixels in the same order. The Dice
definition and its empty-set rules live in engine/evaluation/metrics.py (the one Dice of the product).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.core.device import autocast, check_precision, memory_format, pick_device
from reuse_console.engine.data.batches import model_samples, slices_per_sample
from reuse_console.engine.data.nifti_layouts import save_nifti
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.data.volumes import IGNORE, real_slices
from reuse_console.engine.evaluation.metrics import (
    DiceAccumulator,
    DiceResult,
    check_empty,
    class_map,
    dice_from_counts,
    group_counts,
    nanmean_rows,
    psnr,
)
from reuse_console.engine.evaluation.precision import exact_heads
from reuse_console.engine.evaluation.predictions import GRIDS, write_volume_predictions
from reuse_console.engine.models.layout import spatial_dims, with_layout
from reuse_console.engine.models.registry import load_model
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


@dataclass
class EvalBatch:
    """One batch of evaluation slices, ready for the model."""

    images: torch.Tensor  # (B, 1, H, W) float32
    labels: torch.Tensor  # (B, H, W) int64
    subject: torch.Tensor  # (B,) int64, index into the subject names of `eval_batches`


def eval_batches(
    slices: Any, split: str = "val", batch: int = 32, *, unit: str = "subject"
) -> tuple[list[EvalBatch], list[str]]:
    """The slices of `split` as fixed-order batches, and the names of their units.

    `slices` is an engine.data.slices.SliceSet (3D blocks too: (B,1,D,H,W) batches). Units are
    subjects (default) or, with `unit="volume"` on a data set that has volumes, volumes (frames),
    numbered 0..U-1 in data-set order; `EvalBatch.subject` holds the unit. `batch` counts slices
    (a batch of blocks holds batch // depth).
    """
    batch = max(1, batch // slices_per_sample(slices))
    subject_ids = list(slices.subjects_in(split))
    names = [slices.subjects[s] for s in subject_ids]
    local = {s: i for i, s in enumerate(subject_ids)}
    index = np.asarray(slices.slice_indices(split, subject_ids), dtype=np.int64)
    # keep each subject's slices together and in order, subjects in data-set order
    order = np.argsort(np.asarray([local[int(s)] for s in slices.subject[index]], dtype=np.int64), kind="stable")
    index = index[order]
    unit_of = np.asarray([local[int(s)] for s in slices.subject[index]], dtype=np.int64)
    if unit == "volume" and slices.volume is not None:
        volume = np.asarray(slices.volume)[index]
        first = sorted({int(v): i for i, v in reversed(list(enumerate(volume.tolist())))}.items(), key=lambda kv: kv[1])
        vlocal = {v: i for i, (v, _) in enumerate(first)}
        unit_of = np.asarray([vlocal[int(v)] for v in volume], dtype=np.int64)
        order = np.argsort(unit_of, kind="stable")
        index, unit_of = index[order], unit_of[order]
        names = [slices.volumes[v] for v, _ in first]
    elif unit not in ("subject", "volume"):
        raise UserError(f"unknown Dice unit {unit!r}: choose subject or volume")
    batches: list[EvalBatch] = []
    for start in range(0, len(index), max(1, batch)):
        part = index[start : start + batch]
        batches.append(
            EvalBatch(
                images=torch.from_numpy(np.ascontiguousarray(slices.images[part], dtype=np.float32)).unsqueeze(1),
                labels=torch.from_numpy(np.ascontiguousarray(slices.labels[part])).long(),
                subject=torch.from_numpy(unit_of[start : start + batch].copy()),
            )
        )
    return batches, names


def checkpoint_samples(slices: Any, model: nn.Module, extra: dict[str, Any]) -> Any:
    """The samples a trained model takes: slices at the size it was trained at and, for a 3D model,
    blocks of the depth it was trained with (`extra` is its checkpoint's meta.extra)."""
    depth = extra.get("depth")
    return model_samples(
        slices, size=extra.get("size"), depth=int(depth) if depth else None, dims=spatial_dims(model) or 2
    )


def _forward(model: nn.Module, images: torch.Tensor, device: torch.device, precision: str) -> torch.Tensor:
    x = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device, images.ndim))
    with autocast(device, precision):
        return model(x)


class _EvalMode:
    """Put a model in eval mode for a block and give it back in the mode it was in."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)


def evaluate_seg(
    model: nn.Module,
    batches: Sequence[EvalBatch],
    subjects: Sequence[str],
    classes: Sequence[str],
    present: Sequence[bool],
    device: torch.device,
    precision: str = "fp32",
    *,
    keep_predictions: bool = False,
) -> DiceResult:
    """Dice of the class map (argmax of the logits) per class per subject over all of its slices
    (see metrics.py).

    With `keep_predictions`, `result.extra["predictions"]` and `["references"]` hold one uint8
    array (slices, H, W) per subject, in slice order (for writing NIfTI files).
    """
    acc = DiceAccumulator(len(classes), len(subjects))
    preds: list[list[np.ndarray]] = [[] for _ in subjects]
    refs: list[list[np.ndarray]] = [[] for _ in subjects]
    with _EvalMode(model), torch.inference_mode(), exact_heads(model, len(classes), precision):
        for b in batches:
            logits = _forward(model, b.images, device, precision)
            pred = class_map(logits)
            labels = b.labels.to(device, non_blocking=True)
            acc.update(pred, labels, b.subject)
            if keep_predictions:
                p = pred.to("cpu", torch.uint8).numpy()
                g = b.labels.to(torch.uint8).numpy()
                for i, s in enumerate(b.subject.tolist()):
                    if g[i].ndim == 3:  # a 3D block: its real slices, padding left out
                        keep = real_slices(g[i])
                        preds[s].extend(p[i][keep])
                        refs[s].extend(g[i][keep])
                    else:
                        preds[s].append(p[i])
                        refs[s].append(g[i])
    result = DiceResult.from_accumulator(acc, list(classes), list(present), list(subjects))
    result.extra["counts"] = acc.counts
    if keep_predictions:
        result.extra["predictions"] = [np.stack(p) if p else np.zeros((0, 0, 0), np.uint8) for p in preds]
        result.extra["references"] = [np.stack(g) if g else np.zeros((0, 0, 0), np.uint8) for g in refs]
    return result


def evaluate_ae(
    model: nn.Module, batches: Sequence[EvalBatch], device: torch.device, precision: str = "fp32"
) -> dict[str, float]:
    """Reconstruction error over every pixel and output channel: {"mse", "psnr"}.

    PSNR uses the peak-to-peak range of the evaluated images (they are z-scored, so there is no
    fixed 0..255 or 0..1 range to use). The padding of 3D blocks (labels IGNORE) is left out.
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    lo, hi = float("inf"), float("-inf")
    with _EvalMode(model), torch.inference_mode():
        for b in batches:
            out = _forward(model, b.images, device, precision).float()
            target = b.images.to(device, non_blocking=True)
            real = (b.labels != IGNORE).to(device, non_blocking=True).unsqueeze(1)  # (B, 1, ...)
            total += (((out - target) ** 2) * real).sum(dtype=torch.float64)
            count += int(real.sum()) * out.shape[1]
            images = b.images[b.labels.unsqueeze(1) != IGNORE]
            if images.numel():
                lo, hi = min(lo, float(images.min())), max(hi, float(images.max()))
    if count == 0:
        return {"mse": float("nan"), "psnr": float("nan")}
    mse = float(total) / count
    return {"mse": mse, "psnr": psnr(mse, hi - lo)}


def _check_compatible(meta: Any, slices: Any, ref: str) -> None:
    """A seg checkpoint must predict exactly the data set's classes, in the same order."""
    if meta.task != "seg":
        return
    out = meta.arch_config.get("out_channels")
    if out is not None and int(out) != len(slices.classes):
        raise UserError(
            f"checkpoint {ref!r} predicts {out} classes but data set {slices.name!r} has {len(slices.classes)}"
        )
    if meta.classes and list(meta.classes) != list(slices.classes):
        raise UserError(
            f"checkpoint {ref!r} was trained on classes {meta.classes}, data set {slices.name!r} has {slices.classes}"
        )


def evaluate_checkpoint(
    lab: Lab,
    ref: str,
    *,
    data: str | None = None,
    split: str = "val",
    device: str = "auto",
    precision: str = "fp32",
    batch: int = 32,
    save_predictions: Path | None = None,
    per: str = "subject",
    empty: str = "one",
    grid: str = "source",
) -> dict[str, Any]:
    """Evaluate checkpoint `ref` on data set `data` (default: the one it was trained on).

    Slices are resampled to the size the model was trained at. Returns JSON-able results: seg
    Dice per class (mean, std, per subject; absent classes None and listed under "absent"),
    ae MSE and PSNR. `per="volume"` scores each volume (frame) apart and adds `per_volume` and
    `by_phase` (ED, ES) means, `per_subject` then being each subject's mean over its volumes;
    `empty` is the empty-reference rule (metrics.py). With `save_predictions`, writes NIfTI label
    maps per volume there, on the source grid or the evaluated one (`grid`, predictions.py).
    """
    check_empty(empty)
    if per not in ("subject", "volume"):
        raise UserError(f"--per {per}: choose subject or volume")
    if grid not in GRIDS:
        raise UserError(f"--grid {grid}: choose source or evaluated")
    dev = pick_device(device)
    prec = check_precision(precision, dev)
    model, meta = load_model(lab, ref, device=dev)
    name = data or meta.data
    if not name:
        raise UserError(f"checkpoint {ref!r} does not say which data set it was trained on: give --data")
    stored = load_slices(lab, name)
    _check_compatible(meta, stored, ref)
    labelled = (stored.attrs.get("source") or {}).get("labelled", True) is not False
    slices = checkpoint_samples(stored, model, meta.extra)
    model = with_layout(model, dev)
    if save_predictions is not None and Path(save_predictions).exists() and not Path(save_predictions).is_dir():
        raise UserError(f"--save-predictions {save_predictions} is not a folder: give a folder for the NIfTI files")
    if save_predictions is not None and meta.task != "seg":
        raise UserError("--save-predictions writes label maps: it needs a seg checkpoint")
    if not labelled and meta.task == "seg" and save_predictions is None:
        raise UserError(f"data set {name!r} has no labels (imported for prediction only): give --save-predictions DIR")
    unit = "volume" if slices.volume is not None else "subject"
    batches, units = eval_batches(slices, split, batch=batch, unit=unit)
    if not units:
        raise UserError(f"data set {name!r} has no {split} subjects")
    subject_ids = slices.subjects_in(split)
    subjects = [slices.subjects[s] for s in subject_ids]
    out: dict[str, Any] = {
        "checkpoint": ref,
        "task": meta.task,
        "data": name,
        "split": split,
        "size": slices.size,
        "subjects": subjects,
        "precision": prec,
    }
    if meta.task == "ae":
        return {**out, **evaluate_ae(model, batches, dev, prec)}
    result = evaluate_seg(
        model,
        batches,
        units,
        slices.classes,
        slices.present,
        dev,
        prec,
        keep_predictions=save_predictions is not None,
    )
    if labelled:
        out.update(dice_tables(result, slices, units, subjects, per=per, empty=empty))
    out["classes"] = list(slices.classes)
    out["absent"] = [c for c, p in zip(slices.classes, slices.present) if not p]
    out["labelled"] = labelled
    if save_predictions is not None:
        out["grid"] = grid if unit == "volume" and stored.attrs.get("volume_info") else "stacked"
        if out["grid"] != "stacked":
            files = write_volume_predictions(
                save_predictions,
                stored,
                units,
                result.extra["predictions"],
                grid=grid,
            )
        else:  # no import geometry (written by hand, or imported by an older version): as evaluated
            files = write_predictions(save_predictions, result, slices.spacing)
        out["files"] = [str(p) for p in files]
    return out


def dice_tables(
    result: DiceResult, slices: Any, units: list[str], subjects: list[str], *, per: str, empty: str
) -> dict[str, Any]:
    """The Dice part of `eval`'s output from per-unit counts: per subject (counts of its volumes
    summed) or per volume with per-phase and per-subject means."""
    counts = result.extra["counts"]
    classes, present = list(slices.classes), list(slices.present)
    if slices.volume is None or units == subjects:
        by_unit = DiceResult(classes, present, units, dice_from_counts(counts, empty))
        return {**by_unit.to_dict(), "dice_per": "subject", "empty": empty}
    subject_of_volume = {slices.volumes[int(v)]: slices.subjects[int(s)] for v, s in zip(slices.volume, slices.subject)}
    owner = np.asarray([subjects.index(subject_of_volume[u]) for u in units], dtype=np.int64)
    if per == "subject":
        summed = group_counts(counts, owner, len(subjects))
        by_subject = DiceResult(classes, present, subjects, dice_from_counts(summed, empty))
        return {**by_subject.to_dict(), "dice_per": "subject", "empty": empty}
    per_volume = DiceResult(classes, present, units, dice_from_counts(counts, empty))
    out = per_volume.to_dict()
    out["per_volume"] = out.pop("per_subject")
    means = np.stack([nanmean_rows(per_volume.per_subject[owner == i]) for i in range(len(subjects))])
    out["per_subject"] = {s: per_volume.by_class(row) for s, row in zip(subjects, means)}
    phases = _phases(slices, units)
    out["by_phase"] = {}
    for phase in sorted(set(phases) - {None}):  # type: ignore[type-var]
        rows = np.asarray([p == phase for p in phases])
        subset = DiceResult(classes, present, [u for u, r in zip(units, rows) if r], per_volume.per_subject[rows])
        out["by_phase"][phase] = {**subset.by_class(), "dice_fg": subset.dice_fg, "volumes": int(rows.sum())}
    return {**out, "dice_per": "volume", "empty": empty}


def _phases(slices: Any, units: list[str]) -> list[str | None]:
    """Each volume's phase: from the import's provenance, else an _ED/_ES name ending."""
    known = {str(v.get("volume")): v.get("phase") for v in slices.attrs.get("volume_info") or []}
    out: list[str | None] = []
    for name in units:
        phase = known.get(name)
        if phase is None and name.upper().endswith(("_ED", "_ES")):
            phase = name[-2:].upper()
        out.append(phase)
    return out


def write_predictions(folder: Path, result: DiceResult, spacing: tuple[float, float]) -> list[Path]:
    """`{unit}_pred.nii.gz` and `{unit}_gt.nii.gz` per unit, as evaluated: for data sets with no
    import geometry (no volumes). Slices are stacked along the third axis in evaluation order with
    the in-plane spacing of the evaluated slices and 1 mm between them (the source's is unknown).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    row_mm, col_mm = spacing
    written: list[Path] = []
    for subject, pred, ref in zip(result.subjects, result.extra["predictions"], result.extra["references"]):
        for suffix, stack in (("pred", pred), ("gt", ref)):
            volume = np.ascontiguousarray(np.transpose(stack, (2, 1, 0)).astype(np.uint8))  # (x, y, z)
            written.append(save_nifti(folder / f"{subject}_{suffix}.nii.gz", volume, (col_mm, row_mm, 1.0)))
    return written
