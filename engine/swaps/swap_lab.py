"""A one-off swap of several tensors at once (`reuse-console swap`, the Swap lab's save): evaluated
like one scan variant and kept as a one-variant scan, so every scan reader reads it too."""

from __future__ import annotations

from reuse_console.engine.core.events import Reporter, silent
from reuse_console.engine.evaluation.metrics import check_empty
from reuse_console.engine.swaps.scan_inputs import (
    ALIGNED_OPTION,
    DonorAligner,
    calibration_for,
    check_per,
    load_inputs,
    rule_options,
)
from reuse_console.engine.swaps.scan_lab import choose_name, evaluate_and_store, recalibration_options, stem
from reuse_console.engine.swaps.swap import SwapSpec
from reuse_console.engine.swaps.variants import ScanResult, swap_variant
from reuse_console.store.lab import Lab


def run_swap(
    lab: Lab,
    recipient: str,
    donor: str,
    data: str,
    *,
    layers: str,
    kinds: str,
    alpha: float = 1.0,
    precision: str = "fp32",
    device: str = "auto",
    name: str | None = None,
    batch: int = 32,
    split: str = "val",
    partial: bool = True,
    recalibrate: int | None = None,
    recalibrate_scope: str = "all",
    align: DonorAligner | None = None,
    empty: str = "one",
    per: str = "subject",
    report: Reporter = silent,
) -> ScanResult:
    """One swap of several tensors at once: Dice beside the baseline, kept as a one-variant scan."""
    check_empty(empty), check_per(per)  # before the name is claimed
    aligned = "-aligned" if align is not None else ""
    chosen = choose_name(lab, name, f"swap-{stem(recipient)}-vs-{stem(donor)}{aligned}", False)
    loaded = load_inputs(
        lab,
        recipient,
        donor,
        data,
        device=device,
        precision=precision,
        batch=batch,
        split=split,
        align=align,
        empty=empty,
        per=per,
    )
    calibration = calibration_for(loaded, recalibrate, recalibrate_scope, batch)
    spec = SwapSpec.parse(recipient, donor, loaded.index, layers, kinds, alpha)
    variant = swap_variant(loaded.index.layers, spec.targets, spec.alpha, layers.strip())
    options = {
        "recipient": recipient,
        "donor": donor,
        "data": data,
        "layers": layers,
        "kinds": variant.kind,
        "alphas": [spec.alpha],
        "precision": loaded.precision,
        "split": split,
        "batch": batch,
        "size": loaded.extra["size"],
        "swap": spec.describe(),
        **recalibration_options(recalibrate, calibration),
        **ALIGNED_OPTION.get(align is not None, {}),
        **rule_options(loaded),
    }
    return evaluate_and_store(
        lab,
        loaded,
        [variant],
        name=chosen,
        recipient=recipient,
        donor=donor,
        data=data,
        options=options,
        partial=partial,
        calibration=calibration,
        report=report,
    )
