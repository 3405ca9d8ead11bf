"""What a scan or a swap loads before any evaluation: the recipient, the donor's tensors and the
evaluation batches, checked together (one clear error before work starts), and the calibration
batches of a recalibrated scan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reuse_console.engine.core.device import check_precision, memory_format, pick_device
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches
from reuse_console.engine.evaluation.metrics import apply_empty, check_empty, reference_voxels
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import load_model, model_in_channels
from reuse_console.engine.swaps.donors import donor_tensors
from reuse_console.engine.swaps.recalibration import Calibration
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.swap import check_compatible
from reuse_console.engine.swaps.variants import Variant
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

# aligned_donor(model, recipient_state, donor_state, inputs) -> the donor's state, channels reordered
DonorAligner = Callable[[torch.nn.Module, dict[str, torch.Tensor], dict[str, torch.Tensor], list[torch.Tensor]], dict]
ALIGNED_OPTION = {
    True: {"align": "weights"}
}  # what an aligned scan's options add (nothing otherwise: old scans resume)


@dataclass
class Loaded:
    """Everything a scan needs, loaded and checked."""

    model: torch.nn.Module
    donor: dict[str, torch.Tensor]
    index: LayerIndex
    batches: list[Any]
    subjects: list[str]
    classes: list[str]
    present: list[bool]
    device: torch.device
    precision: str
    meta: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    samples: Any = None  # the data set's samples as the recipient takes them (calibration batches come from it)
    empty: str = "one"  # the empty-reference rule of every Dice (engine/evaluation/metrics.py)
    per: str = "subject"  # the Dice unit: subject (its volumes together) or volume (each frame apart)
    reference: Any = None  # (U, C) reference voxels per unit, counted once for empty="ignore"


def load_inputs(
    lab: Lab,
    recipient: str,
    donor: str,
    data: str,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch: int = 32,
    split: str = "val",
    align: DonorAligner | None = None,
    empty: str = "one",
    per: str = "subject",
) -> Loaded:
    """Load and check the recipient (a seg model), the donor's tensors and the evaluation batches.
    `align` (engine/compare/align_states.py `aligned_donor`, passed in: swaps sit below compare)
    reorders the donor's channels to the recipient's, checked on these batches. `empty` and `per`
    are eval's --empty and --per: the empty-reference rule and the Dice unit (subject or volume)."""
    check_empty(empty)
    check_per(per)
    dev = pick_device(device)
    prec = check_precision(precision, dev)
    model, meta = load_model(lab, recipient, device=dev)
    if meta.task != "seg":
        raise UserError(
            f"recipient {recipient!r} is a {meta.task} model: scans measure Dice, so the recipient must be a seg checkpoint"
        )
    donor_state, donor_arch = donor_tensors(lab, donor, recipient, meta)
    check_compatible(model.state_dict(), donor_state, recipient_arch=meta.arch, donor_arch=donor_arch)
    slices = load_slices(lab, data)
    if meta.classes and list(meta.classes) != list(slices.classes):
        raise UserError(
            f"recipient {recipient!r} predicts classes {meta.classes}, data set {data!r} has {slices.classes}"
        )
    slices = checkpoint_samples(slices, model, meta.extra)
    if per == "volume" and slices.volume is None:
        raise UserError(
            f"--per volume: data set {data!r} records no volumes (frames); import it again, or scan per subject"
        )
    batches, subjects = eval_batches(slices, split, batch=batch, unit=per)
    if not subjects:
        raise UserError(f"data set {data!r} has no {split} subjects to evaluate on")
    if align is not None:
        donor_state = align(model, model.state_dict(), donor_state, [b.images for b in batches])
    index = LayerIndex.from_model(model, model_in_channels(meta.arch_config), size=min(64, slices.size))
    return Loaded(
        model,
        donor_state,
        index,
        batches,
        subjects,
        list(slices.classes),
        list(slices.present),
        dev,
        prec,
        meta,
        {"size": slices.size, "split": split, "batch": batch},
        slices,
        empty,
        per,
        reference_voxels(batches, len(slices.classes), len(subjects)) if empty != "one" else None,
    )


PER = ("subject", "volume")


def check_per(per: str) -> str:
    """`per` checked: the Dice unit of a scan or swap."""
    if per not in PER:
        raise UserError(f"--per {per}: choose subject (its volumes together) or volume (each frame apart)")
    return per


def rule_options(loaded: Loaded) -> dict[str, Any]:
    """The scan options that say how Dice was counted, none at the defaults (older scans resume and
    plans read them unchanged): `empty` ignore, `per` volume."""
    return {
        **({"empty": loaded.empty} if loaded.empty != "one" else {}),
        **({"per": loaded.per} if loaded.per != "subject" else {}),
    }


def calibration_for(loaded: Loaded, batches: int | None, scope: str, batch: int) -> Calibration | None:
    """The first `batches` batches of `batch` slices of the training subjects, in data-set order,
    on the device (None: no recalibration). Fixed, so every variant and a resume see the same."""
    if batches is None:
        return None
    if batches < 1:
        raise UserError(f"--recalibrate must be a number of batches >= 1 (got {batches})")
    train, _ = eval_batches(loaded.samples, "train", batch=batch)
    if not train:
        raise UserError("the data set has no training subjects to recalibrate on")
    fmt = memory_format(loaded.device, train[0].images.ndim)
    images = [b.images.to(loaded.device).contiguous(memory_format=fmt) for b in train[:batches]]
    return Calibration(images, scope)


def recalibration_options(asked: int | None, calibration: Calibration | None) -> dict[str, Any]:
    """The scan options that say how it recalibrated (none for a plain scan: older scans resume):
    the batches asked for, those the training subjects gave, and the scope."""
    if calibration is None:
        return {}
    return {
        "recalibrate": asked,
        "recalibrate_batches": len(calibration.batches),
        "recalibrate_scope": calibration.scope,
    }


def evaluate_loaded(loaded: Loaded, variants: list[Variant], **options: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """`evaluate_variants` on what `load_inputs` loaded (`options`: baseline, done, calibration, ...),
    Dice under the loaded empty-reference rule (also what `on_chunk` sees)."""
    if loaded.empty == "one":
        return _evaluate(loaded, variants, **options)
    on_chunk = options.pop("on_chunk", None)

    def rule(dice: np.ndarray) -> np.ndarray:
        return apply_empty(dice, loaded.reference, loaded.empty)

    def chunk_done(base: np.ndarray, done: dict[str, np.ndarray]) -> None:
        if on_chunk is not None:
            on_chunk(rule(base), {k: rule(v) for k, v in done.items()})

    base, dice, engine = _evaluate(loaded, variants, on_chunk=chunk_done, **options)
    return rule(base), rule(dice), engine


def _evaluate(loaded: Loaded, variants: list[Variant], **options: Any) -> tuple[np.ndarray, np.ndarray, str]:
    return evaluate_variants(
        loaded.model,
        loaded.donor,
        variants,
        loaded.batches,
        classes=loaded.classes,
        present=loaded.present,
        num_subjects=len(loaded.subjects),
        device=loaded.device,
        precision=loaded.precision,
        **options,
    )
