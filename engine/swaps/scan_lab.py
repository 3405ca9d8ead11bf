"""Scans and swaps from the lab: load recipient, donor and data, evaluate, store, resume.

`run_scan` evaluates every single (layer, kind, alpha) variant; with `at_once` (`reuse-console
swap`, the Swap lab's save) it evaluates one variant changing several tensors at once and stores
it as a one-variant scan. Both check that the recipient and donor match tensor for tensor, and
evaluate on the data set's validation subjects, resampled to the size the recipient was trained at.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from reuse_console.engine.core.events import Finished, Message, Reporter, Started, silent
from reuse_console.engine.evaluation.metrics import check_empty
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.swaps.confirm import Confirmation, confirm_in_fp32
from reuse_console.engine.swaps.recalibration import Calibration
from reuse_console.engine.swaps.scan_inputs import (
    ALIGNED_OPTION,
    DonorAligner,
    Loaded,
    calibration_for,
    check_per,
    evaluate_loaded,
    load_inputs,
    recalibration_options,
    rule_options,
)
from reuse_console.engine.swaps.scan_memory import bound_cache, check_cache_mb
from reuse_console.engine.swaps.scan_names import Known, choose_name, resume_state, stem
from reuse_console.engine.swaps.scan_store import progress_path, write_scan
from reuse_console.engine.swaps.stacked import check_stack
from reuse_console.engine.swaps.swap import SwapSpec, check_alpha
from reuse_console.engine.swaps.variants import ScanResult, Variant, plan_variants, swap_variant
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


def evaluate_and_store(
    lab: Lab,
    loaded: Loaded,
    variants: list[Variant],
    *,
    name: str,
    recipient: str,
    donor: str,
    data: str,
    options: dict[str, Any],
    resume: bool = False,
    chunk_variants: int = 32,
    partial: bool = True,
    calibration: Calibration | None = None,
    confirmation: Confirmation | None = None,
    stack: int | None = None,
    report: Reporter = silent,
) -> ScanResult:
    """Evaluate `variants` (resuming from a progress file), write `scans/<name>.h5`; with
    `calibration`, evaluate them again recalibrated and store both side by side; with
    `confirmation`, re-evaluate in fp32 the baseline and the variants near a plan threshold.

    The scan's name is claimed for the whole evaluation (store/claims.py): a second scan or
    resume of the same name is refused while this one runs.
    """
    with lab.claim("scans", name):
        if resume and lab.exists("scans", name):
            raise UserError(f"scan {name!r} is already finished: nothing to resume")
        return _evaluate_and_store(
            lab,
            loaded,
            variants,
            name=name,
            recipient=recipient,
            donor=donor,
            data=data,
            options=options,
            resume=resume,
            chunk_variants=chunk_variants,
            partial=partial,
            calibration=calibration,
            confirmation=confirmation,
            stack=stack,
            report=report,
        )


def _evaluate_and_store(
    lab: Lab,
    loaded: Loaded,
    variants: list[Variant],
    *,
    name: str,
    recipient: str,
    donor: str,
    data: str,
    options: dict[str, Any],
    resume: bool,
    chunk_variants: int,
    partial: bool,
    calibration: Calibration | None,
    confirmation: Confirmation | None,
    stack: int | None,
    report: Reporter,
) -> ScanResult:
    progress = progress_path(lab, name)
    known = resume_state(progress, options, variants) if resume else Known()
    baseline, done, spent = known.baseline, known.done, known.seconds
    if resume:
        report(Message(f"resuming scan {name}: {len(done)} of {len(variants)} variants already done"))
    report(Started(f"scan {name}", len(variants), unit="variants", info={"done": len(done)}))
    result = ScanResult(
        name,
        recipient,
        donor,
        data,
        loaded.classes,
        loaded.present,
        loaded.subjects,
        np.zeros((len(loaded.subjects), len(loaded.classes))),
        variants,
        np.full((len(variants), len(loaded.subjects), len(loaded.classes)), np.nan),
        loaded.precision,
        str(loaded.device),
        "",
        spent,
        options,
    )
    if calibration is not None:
        result.recalibrated_baseline = np.full(result.baseline.shape, np.nan)
        result.recalibrated = np.full(result.dice.shape, np.nan)
        if known.recalibrated_baseline is not None:
            result.recalibrated_baseline = known.recalibrated_baseline
        result.recalibrated = _stack(variants, known.recalibrated, result.dice.shape[1:])
    start = time.perf_counter()

    def save_progress(base: np.ndarray, finished: dict[str, np.ndarray]) -> None:
        result.baseline = base
        result.dice = _stack(variants, finished, result.dice.shape[1:])
        result.seconds = spent + time.perf_counter() - start
        if len(finished) < len(variants) or calibration is not None:
            write_scan(progress, result, complete=False, provenance=_provenance(options))

    def save_recalibrated(base: np.ndarray, finished: dict[str, np.ndarray]) -> None:
        result.recalibrated_baseline = base
        result.recalibrated = _stack(variants, finished, result.dice.shape[1:])
        result.seconds = spent + time.perf_counter() - start
        if len(finished) < len(variants):
            write_scan(progress, result, complete=False, provenance=_provenance(options))

    base, dice, engine = evaluate_loaded(
        loaded,
        variants,
        baseline=baseline,
        done=done,
        chunk_variants=chunk_variants,
        partial=partial,
        stack=stack,
        report=report,
        on_chunk=save_progress,
    )
    result.baseline, result.dice, result.engine = base, dice, engine
    if confirmation is not None:
        fp32 = replace(loaded, precision="fp32")
        confirm_in_fp32(
            result,
            variants,
            confirmation,
            loaded.present,
            lambda chosen: evaluate_loaded(fp32, chosen, partial=partial, stack=stack, report=report)[:2],
            report,
        )
    if calibration is not None:
        report(
            Message(
                f"recalibrated pass: norm statistics re-estimated on {_batches(len(calibration.batches))} "
                f"of training subjects (scope {calibration.scope})"
            )
        )
        result.recalibrated_baseline, result.recalibrated, _ = evaluate_loaded(
            loaded,
            variants,
            baseline=known.recalibrated_baseline,
            done=known.recalibrated,
            chunk_variants=chunk_variants,
            partial=partial,
            calibration=calibration,
            report=report,
            on_chunk=save_recalibrated,
        )
    result.seconds = spent + time.perf_counter() - start
    write_scan(lab.path("scans", name), result, provenance=_provenance(options, engine))
    progress.unlink(missing_ok=True)
    report(Finished(f"scan {name}", result=name, seconds=result.seconds))
    return result


def _batches(n: int) -> str:
    return f"{n} batch" if n == 1 else f"{n} batches"


def _stack(variants: list[Variant], finished: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """(V, S, C) Dice in variant order, NaN for variants not finished yet."""
    return np.stack([finished.get(v.id, np.full(shape, np.nan)) for v in variants])


def _provenance(options: dict[str, Any], engine: str = "") -> dict[str, Any]:
    """What a scan file records of how it was made; `engine` says whether the fast path ran, or why not."""
    out = {
        "recipient": options.get("recipient"),
        "donor": options.get("donor"),
        "data": options.get("data"),
        "options": options,
    }
    if engine:
        out["engine"] = engine
    return out


def _plan(
    index: LayerIndex, recipient: str, donor: str, layers: str, kinds: str, alphas: tuple[float, ...], at_once: bool
) -> tuple[list[Variant], dict[str, Any]]:
    """The variants to evaluate and the options that say what they are: each (layer, kind, alpha)
    alone, or (`at_once`) one swap of them all, whose options keep its description."""
    if at_once:
        spec = SwapSpec.parse(recipient, donor, index, layers, kinds, alphas[0])
        variant = swap_variant(index.layers, spec.targets, spec.alpha, layers.strip())
        return [variant], {"kinds": variant.kind, "alphas": [spec.alpha], "swap": spec.describe()}
    wanted = LayerIndex.parse_kinds(kinds)
    variants = plan_variants(index.select(layers), wanted, alphas)
    if not variants:
        raise UserError(f"layers {layers!r} have none of the kinds {','.join(wanted)}: nothing to scan")
    return variants, {"kinds": ",".join(wanted), "alphas": list(alphas)}


def run_scan(
    lab: Lab,
    recipient: str,
    donor: str,
    data: str,
    *,
    layers: str = "all",
    kinds: str = "all",
    alphas: tuple[float, ...] = (1.0,),
    precision: str = "fp32",
    device: str = "auto",
    name: str | None = None,
    resume: bool = False,
    batch: int = 32,
    split: str = "val",
    chunk_variants: int = 32,
    partial: bool = True,
    recalibrate: int | None = None,
    recalibrate_scope: str = "all",
    pairs: str | None = None,
    confirm: float | None = None,
    confirm_at: str = "0.05",
    align: DonorAligner | None = None,
    empty: str = "one",
    per: str = "subject",
    cache_mb: float | None = None,
    at_once: bool = False,
    stack: int | None = None,
    report: Reporter = silent,
) -> ScanResult:
    """Every single (layer, kind, alpha) swap of `recipient` towards `donor`, Dice on `data`; with
    `recalibrate` N, each also with its norm statistics re-estimated on N training batches.
    `empty` and `per`: eval's empty-reference rule and Dice unit (kept in the options).
    `pairs`: the `R:D,R:D` set this scan belongs to (`scan --pairs`), kept so the set's scans
    are read together (engine/swaps/overlay.py). `confirm` MARGIN (a bf16/fp16 scan): variants
    whose drop lies within MARGIN of a `confirm_at` threshold are re-evaluated in fp32. `cache_mb`:
    smaller evaluation batches keep the activations within that many MB (engine/swaps/scan_memory.py).
    `stack` K: variants of a group per downstream pass (engine/swaps/stacked.py; None: the device's default).
    `at_once`: one swap of every listed kind of the listed layers together at the one alpha
    (`reuse-console swap`), Dice beside the baseline, kept as a one-variant scan named `swap-...`."""
    alphas = tuple(check_alpha(a) for a in alphas)
    check_empty(empty), check_per(per), check_cache_mb(cache_mb), check_stack(stack)  # before the name is claimed
    if at_once and len(alphas) != 1:
        raise UserError(f"a swap takes one alpha, not {len(alphas)}")
    confirmation = Confirmation.parse(confirm, confirm_at, precision)
    aligned = "-aligned" if align is not None else ""
    base = f"{'swap-' if at_once else ''}{stem(recipient)}-vs-{stem(donor)}{aligned}"
    chosen = choose_name(lab, name, base, resume)
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
    variants, planned = _plan(loaded.index, recipient, donor, layers, kinds, alphas, at_once)
    bounded: dict[str, Any] = {}
    if cache_mb is not None:
        precisions = (loaded.precision, *(("fp32",) if confirmation else ()))
        loaded, bounded = bound_cache(loaded, variants, cache_mb, precisions, report)
    options = {
        "recipient": recipient,
        "donor": donor,
        "data": data,
        "layers": layers,
        **planned,
        "precision": loaded.precision,
        "split": split,
        "batch": batch,
        "size": loaded.extra["size"],
        **recalibration_options(recalibrate, calibration),
        **({"pairs": pairs} if pairs else {}),
        **(confirmation.options() if confirmation else {}),
        **ALIGNED_OPTION.get(align is not None, {}),
        **rule_options(loaded),
        **bounded,
    }
    return evaluate_and_store(
        lab,
        loaded,
        variants,
        name=chosen,
        recipient=recipient,
        donor=donor,
        data=data,
        options=options,
        resume=resume,
        chunk_variants=chunk_variants,
        partial=partial,
        calibration=calibration,
        confirmation=confirmation,
        stack=stack,
        report=report,
    )
