"""Scans: Dice of many swap variants of one recipient, evaluated fast and exactly.

A *variant* changes some recipient tensors towards the donor's (one (layer, kind) at a given
alpha for a scan; any set for a one-off swap). The naive evaluation copies the model, loads a
state dict and runs the whole validation set per variant. Here batches are the outer loop and
variants the inner one: each batch goes once through the unchanged model (engine/swaps/partial.py),
and each variant swaps its tensors in place, re-runs only the part of the network downstream of
its first changed module from cached activations, and restores them. Variants whose first
changed module is the same share one cache (a *group*).

Variants are evaluated in chunks of consecutive groups; after each chunk its variants are final
and a progress file is written, so a killed scan resumes without redoing them. The results go
to `scans/<name>.h5` (see scan_store.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.core.device import autocast, exact_fp32, memory_format
from reuse_console.engine.core.events import Message, Reporter, VariantDone, silent
from reuse_console.engine.evaluation.metrics import DiceAccumulator, class_map, confusion_base
from reuse_console.engine.evaluation.precision import exact_heads
from reuse_console.engine.models.layout import with_layout
from reuse_console.engine.swaps.partial import Downstream, PartialFailed, PartialForward
from reuse_console.engine.swaps.recalibration import Calibration, Recalibrator
from reuse_console.engine.swaps.stacked import stacker_for
from reuse_console.engine.swaps.swap import Swap, donor_like
from reuse_console.engine.swaps.variants import Variant

_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Ask glibc malloc to reuse freed activation buffers instead of unmapping them.

    A scan allocates and frees the same large activations (tens of MB each) thousands of times.
    glibc serves blocks above its mmap threshold (at most 32 MiB by default) with fresh mmaps,
    so every such activation costs page faults and zeroing; keeping freed memory in the heap
    makes a CPU forward up to ~1.4x faster. Process-wide and one-way (the process keeps its
    peak memory); a no-op off glibc. Returns whether it was applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (OSError, AttributeError):
        ok = False
    _ALLOCATOR_TUNED = ok
    return ok


@contextmanager
def _scan_mode(model: nn.Module, classes: int, precision: str) -> Iterator[None]:
    """Eval mode and no parameter needing grad, given back after; in bf16/fp16 the class-score
    layers compute in fp32 (engine/evaluation/precision.py).

    Outside inference mode, autocast caches the low-precision copy of a weight that requires
    grad for as long as the autocast region lasts, and an in-place swap would be invisible.
    Without requires_grad the weight is cast afresh at each use, whatever the grad mode.
    """
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with exact_heads(model, classes, precision):
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


@contextmanager
def _recalibrator(
    model: nn.Module, calibration: Calibration | None, device: torch.device, precision: str
) -> Iterator[Recalibrator | None]:
    """The variants' norm statistics for a recalibrated evaluation (None: evaluate as is)."""
    if calibration is None:
        yield None
        return
    with torch.inference_mode(), autocast(device, precision):
        recal = Recalibrator(model, calibration)
    try:
        yield recal
    finally:
        recal.close()


def _calibrate(
    engine: PartialForward,
    recal: Recalibrator,
    chunk: Sequence[str],
    by_group: Mapping[str, Sequence[int]],
    todo: Sequence[Variant],
    swaps: Mapping[int, Swap],
    device: torch.device,
    precision: str,
) -> None:
    """Re-estimate each variant's downstream norm statistics on the calibration batches."""
    members = [i for g in chunk for i in by_group[g]]
    recal.forget(members)

    def visit(group: str, downstream: Downstream) -> None:
        for i in by_group[group]:
            with swaps[i]:
                recal.accumulate(i, todo[i].modules, downstream)

    with recal.calibrating(), torch.inference_mode(), autocast(device, precision):
        for x in recal.calibration.batches:
            engine.run(x, visit, chunk, to_end=False)


def chunk_groups(engine: PartialForward, variants: Sequence[Variant], size: int) -> list[list[str]]:
    """Consecutive groups (in the order their caches become ready) of at least `size` variants."""
    counts: dict[str, int] = {}
    for v in variants:
        counts[v.group] = counts.get(v.group, 0) + 1
    order = list(counts)
    if engine.partial:
        order.sort(key=lambda g: engine.groups[g].ready)
    chunks: list[list[str]] = [[]]
    n = 0
    for group in order:
        if n >= size:
            chunks.append([])
            n = 0
        chunks[-1].append(group)
        n += counts[group]
    return [c for c in chunks if c]


def evaluate_variants(
    model: nn.Module,
    donor: Mapping[str, torch.Tensor],
    variants: Sequence[Variant],
    batches: Sequence[Any],
    *,
    classes: Sequence[str],
    present: Sequence[bool],
    num_subjects: int,
    device: torch.device,
    precision: str = "fp32",
    baseline: np.ndarray | None = None,
    done: Mapping[str, np.ndarray] | None = None,
    chunk_variants: int = 32,
    partial: bool = True,
    calibration: Calibration | None = None,
    report: Reporter = silent,
    on_chunk: Callable[[np.ndarray, dict[str, np.ndarray]], None] | None = None,
    exact_head: bool = True,
    fold: bool | None = None,
    stack: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Dice (S, C) of the unchanged model and (V, S, C) of every variant, and the engine used.

    `model` is on `device`; `batches` hold `images` (B,1,H,W), `labels` (B,H,W), `subject` (B,).
    `done` maps variant ids to Dice already known (a resumed scan); `on_chunk(baseline, done)`
    is called after each chunk with everything known so far. With `calibration`, every variant
    (and, for scope all, the baseline) is evaluated with its norm statistics re-estimated
    (engine/swaps/recalibration.py); the model's own statistics are put back at the end. In
    bf16/fp16 the class-score layers run in fp32 (`exact_head`, engine/evaluation/precision.py).
    With `fold` (default: in bf16/fp16) each conv -> batch norm -> ReLU runs as one convolution
    folded from the live tensors (engine/swaps/fold.py): in bf16 it removes most of the rounding
    error and is faster; in fp32 it only reorders rounding (up to 1.8e-5 Dice on the bench models)
    and is at most ~1.15x faster, so fp32 keeps bit-exact values (a conv and its ReLU still fuse).
    `stack` K: up to K variants of a group in one downstream pass (engine/swaps/stacked.py; None: 1 on
    CPU, 8 on CUDA; not with `calibration`). On CUDA an fp32 scan runs without TF32.
    """
    done = dict(done or {})
    head = precision if exact_head else "fp32"  # the precision asked of the class-score layers
    if device.type == "cpu":
        keep_freed_memory()
    with_layout(model, device)
    fmt = memory_format(device, batches[0].images.ndim if batches else 4)
    keys = sorted({k for v in variants for k in v.keys})
    donor_live = donor_like(donor, model, keys)
    todo = [v for v in variants if v.id not in done]
    groups: dict[str, list[str]] = {}
    for v in todo:
        groups.setdefault(v.group, [])
        groups[v.group].extend(k for k in v.keys if k not in groups[v.group])
    fold = precision != "fp32" if fold is None else fold
    engine = PartialForward(model, groups, trace=partial, fold=fold)
    if partial and batches:  # also when tracing failed: modules that trace wrongly may be kept whole
        # in fp32 whatever the scan's precision: this checks the graph, and a folded bf16 graph is
        # meant to differ from the model's own bf16 forward (it is closer to fp32)
        with _scan_mode(model, len(classes), "fp32"), torch.inference_mode():
            engine.verify(batches[0].images.to(device).contiguous(memory_format=fmt))
    kept = f", kept whole: {', '.join(engine.opaque)}" if engine.opaque else ""
    how = (
        f"partial re-execution of {len(groups)} groups{kept}"
        if engine.partial
        else f"full forward per variant ({engine.reason})"
    )
    report(Message(f"{len(todo)} of {len(variants)} variants to evaluate: {how}"))
    by_group: dict[str, list[int]] = {}
    for i, v in enumerate(todo):
        by_group.setdefault(v.group, []).append(i)
    num_classes = len(classes)
    finished = len(variants) - len(todo)
    with (
        exact_fp32(device, precision),
        _scan_mode(model, len(classes), head),
        _recalibrator(model, calibration, device, precision) as recal,
    ):
        stacker = None
        if recal is None:
            stacker = stacker_for(
                model, donor_live, todo, stack=stack, precision=precision, device=device, report=report
            )
        chunks = chunk_groups(engine, todo, chunk_variants) if todo else []
        if baseline is None and not chunks:
            chunks = [[]]
        for chunk in chunks:
            members = [i for g in chunk for i in by_group[g]]
            swaps = {i: Swap(model, donor_live, todo[i].keys, todo[i].alpha) for i in members}

            def run_chunk() -> tuple[dict[int, DiceAccumulator], DiceAccumulator | None]:
                accs = {i: DiceAccumulator(num_classes, num_subjects) for i in members}  # noqa: B023
                base_acc = DiceAccumulator(num_classes, num_subjects) if baseline is None else None  # noqa: B023
                if recal is not None:
                    _calibrate(engine, recal, chunk, by_group, todo, swaps, device, precision)  # noqa: B023
                for b in batches:
                    x = b.images.to(device).contiguous(memory_format=fmt)
                    labels = b.labels.to(device)
                    base = confusion_base(labels, num_classes)  # the same for every variant

                    def take(i: int, out: torch.Tensor) -> None:
                        accs[i].update(class_map(out), labels, b.subject, base)  # noqa: B023

                    def visit(group: str, downstream: Any) -> None:
                        # called by engine.run below, within this iteration: the loop variables are current
                        left = by_group[group]
                        if stacker is not None:  # K at a time; hands back what it did not evaluate
                            left = stacker.evaluate(group, left, downstream, take)
                        for i in left:
                            with swaps[i], recal.using(i) if recal is not None else nullcontext():  # noqa: B023
                                out = downstream.run()
                            take(i, out)

                    with torch.inference_mode(), autocast(device, precision):
                        out = engine.run(x, visit, chunk, to_end=base_acc is not None)  # noqa: B023
                    if base_acc is not None:
                        base_acc.update(class_map(out), labels, b.subject, base)
                return accs, base_acc

            try:
                accs, base_acc = run_chunk()
            except PartialFailed as exc:  # the chunk again, the model's own way (swaps were restored)
                engine.switch_off(exc.reason)
                report(Message(f"falling back to a full forward per variant: {exc.reason}"))
                accs, base_acc = run_chunk()
            if base_acc is not None:
                baseline = base_acc.per_subject()
            for i in members:
                v = todo[i]
                done[v.id] = accs[i].per_subject()
                finished += 1
                mean = done[v.id].mean(axis=0)
                report(
                    VariantDone(
                        finished,
                        len(variants),
                        v.label(),
                        v.kind,
                        v.alpha,
                        {c: float(m) for c, m, p in zip(classes, mean, present) if p},
                    )
                )
            if baseline is None:  # the first chunk evaluates it (an empty chunk when no variant is left)
                raise RuntimeError("the scan's first chunk did not evaluate the baseline")
            if on_chunk is not None:
                on_chunk(baseline, done)
    if baseline is None:
        raise RuntimeError("a scan without a baseline and without chunks")  # chunks = [[]] above
    dice = np.stack([done[v.id] for v in variants]) if variants else np.zeros((0, num_subjects, num_classes))
    return baseline, dice, "partial" if engine.partial else f"full: {engine.reason}"
