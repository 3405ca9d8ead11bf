"""`scan --cache-mb`: a scan's activation memory bounded by evaluating smaller batches.

Per batch a scan holds the activations its groups re-run from (the cache: what the baseline pass
still needs plus every pending group's frontier, engine/swaps/partial.py) and, while a variant
runs, that variant's downstream activations. All of it grows with the slices in a batch, so the
bound is met by splitting the loaded batches. Dice counts add up slice by slice, so the results
do not depend on the batch (fp32: identical, tested).

The peak is measured, not estimated: a probe scan on the first slices (one variant of every group,
all groups in one chunk, the largest cache any chunk holds) with every tensor allocated during it
tracked until freed. The peak is the largest of the live sums over time, each linear in the
batch size, so it is convex in the batch size and the line through the probes at 1 slice and at
a full batch lies above it in between: the largest batch under the bound on that line is safe.
Fewer groups per chunk would hardly help (the baseline pass keeps the skip connections alive
anyway, and one variant's re-run dominates), so chunks are left as they are. The calibration
batches of --recalibrate keep --batch: their norm statistics depend on it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.swaps.scan_inputs import Loaded, evaluate_loaded
from reuse_console.engine.swaps.variants import Variant
from reuse_console.store.errors import UserError

MB = 1e6


class LiveTensors(TorchDispatchMode):
    """Bytes of the tensors allocated on `device` inside the mode and still alive: `now` and `peak`.

    Tensors from before (the model's, the input batches) are not counted; views and in-place
    results share an input's storage and are not counted again. oneDNN's own scratch space is
    not a tensor and is not seen.
    """

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.now = 0
        self.peak = 0
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.sweep()
        inputs = {_storage_key(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != self.device.type:
                continue
            key = _storage_key(t)
            if key is None or key in inputs or key in self._live:
                continue
            storage = t.untyped_storage()
            self._live[key] = (StorageWeakRef(storage), storage.nbytes())
            self.now += storage.nbytes()
        self.peak = max(self.peak, self.now)
        return out

    def sweep(self) -> None:
        """Forget the tensors freed since the last op (done before each op's outputs are counted)."""
        for key, (ref, size) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.now -= size


def _storage_key(t: torch.Tensor) -> int | None:
    """The address of a tensor's storage (None: no storage, e.g. an opaque oneDNN tensor, or empty)."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    return storage.data_ptr() if storage.nbytes() else None


def probe_peak(loaded: Loaded, variants: list[Variant], slices: int, precision: str) -> int:
    """Bytes at the peak of a scan of one variant per group on the first `slices` slices."""
    first = max(loaded.batches, key=lambda b: int(b.images.shape[0]))
    probe = [EvalBatch(first.images[:slices], first.labels[:slices], first.subject[:slices])]
    one_each = list({v.group: v for v in reversed(variants)}.values())
    tracker = LiveTensors(loaded.device)
    with tracker:
        evaluate_loaded(replace(loaded, batches=probe, precision=precision), one_each, chunk_variants=len(one_each))
    return tracker.peak


def largest_batch(one: float, full: float, size: int, bound: float) -> int:
    """The largest batch (<= `size`) whose peak on the line through (1, one) and (size, full) is
    within `bound`; 0 when even one slice is not."""
    if one > bound:
        return 0
    if full <= bound or size == 1:
        return size
    return min(size, 1 + int((bound - one) * (size - 1) // (full - one)))


def split_batches(batches: list[EvalBatch], size: int) -> list[EvalBatch]:
    """The same slices in the same order, in batches of at most `size`."""
    return [
        EvalBatch(b.images[i : i + size], b.labels[i : i + size], b.subject[i : i + size])
        for b in batches
        for i in range(0, int(b.images.shape[0]), size)
    ]


def check_cache_mb(cache_mb: float | None) -> float | None:
    if cache_mb is not None and not (math.isfinite(cache_mb) and cache_mb > 0):
        raise UserError(f"--cache-mb must be a positive number of MB (got {cache_mb:g})")
    return cache_mb


def bound_cache(
    loaded: Loaded,
    variants: list[Variant],
    cache_mb: float,
    precisions: tuple[str, ...],
    report: Reporter = silent,
) -> tuple[Loaded, dict[str, Any]]:
    """`loaded` with its batches split so that a scan's activations stay within `cache_mb` MB in
    every one of `precisions` (a confirmed bf16 scan re-evaluates in fp32), and the options that
    record it (`cache_mb`, `eval_batch`)."""
    bound = check_cache_mb(cache_mb) or 0.0
    size = max(int(b.images.shape[0]) for b in loaded.batches)
    chosen, peaks = size, []
    for precision in dict.fromkeys(precisions):
        full = probe_peak(loaded, variants, size, precision)
        one = full if full <= bound * MB or size == 1 else probe_peak(loaded, variants, 1, precision)
        peaks.append((full, one))
        chosen = min(chosen, largest_batch(one, full, size, bound * MB))
    full, one = max(peaks)
    if chosen == 0:
        raise UserError(
            f"--cache-mb {cache_mb:g}: one slice alone needs {one / MB:.3g} MB of activations at the scan's peak "
            "(measured): raise --cache-mb"
        )
    batches = split_batches(loaded.batches, chosen) if chosen < size else loaded.batches
    measured = f"{full / MB:.1f} MB at {size} slices" + (f", {one / MB:.2f} MB at 1" if one != full else "")
    report(
        Message(
            f"--cache-mb {cache_mb:g}: activations peak at {measured} (measured on a probe): "
            f"evaluating {chosen} slices at a time ({len(batches)} batches), chunks unchanged"
        )
    )
    return replace(loaded, batches=batches), {"cache_mb": cache_mb, "eval_batch": chosen}
