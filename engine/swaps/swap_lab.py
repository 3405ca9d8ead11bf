"""A one-off swap of several tensors at once (`reuse-console swap`): evaluated like one scan variant
and kept as a one-variant scan, so every scan reader reads it too. It is `run_scan` with `at_once`
(engine/swaps/scan_lab.py): one way to load, evaluate and record a scan's options."""

from __future__ import annotations

from reuse_console.engine.core.events import Reporter, silent
from reuse_console.engine.swaps.scan_inputs import DonorAligner
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.variants import ScanResult
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
    return run_scan(
        lab,
        recipient,
        donor,
        data,
        layers=layers,
        kinds=kinds,
        alphas=(alpha,),
        precision=precision,
        device=device,
        name=name,
        batch=batch,
        split=split,
        partial=partial,
        recalibrate=recalibrate,
        recalibrate_scope=recalibrate_scope,
        align=align,
        empty=empty,
        per=per,
        at_once=True,
        report=report,
    )
