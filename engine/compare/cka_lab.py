"""`reuse-console cka`: CKA between checkpoints' activations, layer by layer, stored in the lab.

Every model runs on the same evaluation batches (the data set's `split` slices at the size the
models were trained at, blocks for 3D models: engine/evaluation/evaluate.py); hooks reduce each
layer's output to feature rows (engine/compare/features.py) and `GramStats` folds them in batch by
batch (engine/compare/cka.py), so memory is bounded by the statistics (channels^2 per pair and
layer) and one batch's rows, never by the number of slices. When the statistics of all chosen
layers would pass `memory_mb`, the layers are split into groups and the data is run once per group.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.compare.cka import GramStats, stats_bytes
from reuse_console.engine.compare.cka_store import Similarity, write_similarity
from reuse_console.engine.compare.features import Capture, FeatureSpec
from reuse_console.engine.core.device import autocast, check_precision, memory_format, pick_device
from reuse_console.engine.core.events import Finished, Message, Progress, Reporter, Started, silent
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches
from reuse_console.engine.models.layers import Layer, LayerIndex
from reuse_console.engine.models.layout import spatial_dims, with_layout
from reuse_console.engine.models.registry import load_model, model_in_channels
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


@dataclass
class Models:
    """The checkpoints to compare, built and checked against each other."""

    refs: list[str]
    models: list[nn.Module]
    layers: list[Layer]  # the selection, in the first model's index
    per_model: list[list[Layer]]  # the same layers in each model's own index
    extra: dict[str, Any]  # the first model's checkpoint extra (size, depth)


def _stem(ref: str) -> str:
    return Path(ref).name.removesuffix(".h5")


def load_models(lab: Lab, refs: Sequence[str], layers: str, device: torch.device) -> Models:
    """Load the checkpoints; refuse fewer than two, repeats, mixed architectures or layer indexes."""
    if len(refs) < 2:
        raise UserError("give at least two checkpoints to compare")
    if len(set(refs)) != len(refs):
        raise UserError("the same checkpoint is named twice")
    loaded = [load_model(lab, ref, device=device) for ref in refs]
    first = loaded[0][1]
    for ref, (_, meta) in zip(refs[1:], loaded[1:]):
        if meta.arch != first.arch:
            raise UserError(
                f"{refs[0]} is a {first.arch} but {ref} is a {meta.arch}: CKA pairs layers by number, "
                "so it needs one architecture"
            )
        for key in ("size", "depth"):
            if meta.extra.get(key) != first.extra.get(key):
                raise UserError(
                    f"{refs[0]} was trained with {key} {first.extra.get(key)} but {ref} with {meta.extra.get(key)}: "
                    "CKA compares the models on the same samples"
                )
    size = min(64, int(first.extra.get("size") or 64))
    indexes = [LayerIndex.from_model(m, model_in_channels(meta.arch_config), size=size) for m, meta in loaded]
    names = [layer.name for layer in indexes[0]]
    for ref, index in zip(refs[1:], indexes[1:]):
        if [layer.name for layer in index] != names:
            raise UserError(
                f"{refs[0]} has {len(indexes[0].numbered)} numbered layers ({len(names)} in all) but {ref} has "
                f"{len(index.numbered)} ({len(index)}): CKA pairs layers by number, so the models need the same layers"
            )
    chosen = indexes[0].select(layers)
    rows = [names.index(layer.name) for layer in chosen]
    per_model = [[index.layers[r] for r in rows] for index in indexes]
    return Models(list(refs), [with_layout(m, device) for m, _ in loaded], chosen, per_model, dict(first.extra))


def _forward(model: nn.Module, images: torch.Tensor, device: torch.device, precision: str) -> None:
    x = images.to(device, non_blocking=True).contiguous(memory_format=memory_format(device, images.ndim))
    with autocast(device, precision):
        model(x)


def _run_batch(
    models: Models, captures: list[Capture], images: torch.Tensor, number: int, device: torch.device, precision: str
) -> list[dict[int, torch.Tensor]]:
    """Each model's feature rows per hooked layer for one batch (same pixel draws in every model)."""
    out = []
    for model, capture in zip(models.models, captures):
        capture.begin(number)
        _forward(model, images, device, precision)
        out.append(capture.rows)
    return out


def _widths(
    models: Models, images: torch.Tensor, spec: FeatureSpec, device: torch.device, stats_device: torch.device
) -> np.ndarray:
    """Feature width (M, L) of every model and layer, from one sample; checks the pixel grids agree."""
    shapes: list[dict[int, tuple[int, ...]]] = []
    widths = np.zeros((len(models.models), len(models.layers)), dtype=np.int64)
    for m, (model, layers) in enumerate(zip(models.models, models.per_model)):
        with Capture(model, layers, spec, stats_device) as capture, torch.inference_mode():
            capture.begin(0)
            _forward(model, images[:1], device, "fp32")
            missing = [layers[i].name for i in range(len(layers)) if i not in capture.rows]
            if missing:
                raise UserError(
                    f"{models.refs[m]}: layer {missing[0]} did not run in a forward pass, so it has no activation"
                )
            widths[m] = [capture.rows[i].shape[1] for i in range(len(layers))]
            shapes.append(dict(capture.shapes))
    if spec.mode == "pixels":
        for m in range(1, len(shapes)):
            for i, layer in enumerate(models.layers):
                if shapes[m][i] != shapes[0][i]:
                    raise UserError(
                        f"layer {layer.name} is {shapes[0][i]} in {models.refs[0]} but {shapes[m][i]} in "
                        f"{models.refs[m]}: --features pixels needs the same positions; use --features pooled"
                    )
    return widths


def layer_groups(widths: np.ndarray, rows_per_batch: int, memory_mb: float) -> list[list[int]]:
    """Consecutive layers whose statistics and one batch's rows fit `memory_mb` together (one pass
    over the data each); a layer that alone needs more gets a pass of its own."""
    budget = memory_mb * 2**20
    groups: list[list[int]] = []
    used = 0.0
    for layer in range(widths.shape[1]):
        need = stats_bytes([int(p) for p in widths[:, layer]]) + 8 * rows_per_batch * int(widths[:, layer].sum())
        if groups and used + need <= budget:
            groups[-1].append(layer)
            used += need
        else:
            groups.append([layer])
            used = need
    return groups


def measure(
    models: Models,
    batches: Sequence[Any],
    spec: FeatureSpec,
    *,
    device: torch.device,
    precision: str = "fp32",
    memory_mb: float = 512.0,
    report: Reporter = silent,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Linear and debiased CKA (P, L) of every pair, feature widths (M, L), rows per layer, passes."""
    stats_device = device if device.type == "cuda" else torch.device("cpu")
    widths = _widths(models, batches[0].images, spec, device, stats_device)
    biggest = max(int(b.images.shape[0]) for b in batches)
    groups = layer_groups(widths, biggest * spec.rows_per_sample(), memory_mb)
    pairs = list(itertools.combinations(range(len(models.models)), 2))
    linear = np.full((len(pairs), len(models.layers)), np.nan)
    debiased = np.full_like(linear, np.nan)
    total = len(groups) * len(batches)
    report(Started("cka", total, "batches", {"passes": len(groups), "layers": len(models.layers)}))
    if len(groups) > 1:
        report(Message(f"statistics need more than --memory-mb {memory_mb:g}: {len(groups)} passes over the data"))
    rows = 0
    done = 0
    for g, group in enumerate(groups):
        stats = [GramStats(len(models.models)) for _ in group]
        captures = [
            Capture(model, [layers[i] for i in group], spec, stats_device)
            for model, layers in zip(models.models, models.per_model)
        ]
        try:
            with torch.inference_mode():
                for number, batch in enumerate(batches):
                    features = _run_batch(models, captures, batch.images, number, device, precision)
                    for slot, stat in enumerate(stats):
                        stat.update([f[slot] for f in features])
                    done += 1
                    report(Progress(done, total, f"pass {g + 1}/{len(groups)}"))
        finally:
            for capture in captures:
                capture.close()
        for slot, layer in enumerate(group):
            for p, (a, b) in enumerate(pairs):
                linear[p, layer] = stats[slot].linear_cka(a, b)
                debiased[p, layer] = stats[slot].debiased_cka(a, b)
        rows = stats[0].n
    return linear, debiased, widths, rows, len(groups)


def run_cka(
    lab: Lab,
    refs: Sequence[str],
    data: str,
    *,
    layers: str = "all",
    features: str = "pooled",
    pixels: int = 64,
    split: str = "val",
    batch: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    memory_mb: float = 512.0,
    name: str | None = None,
    report: Reporter = silent,
) -> Similarity:
    """CKA of checkpoints `refs` (every pair, every chosen layer) on data set `data`, stored as
    `comparisons/<name>.h5` (default `cka-A-B-...`)."""
    spec = FeatureSpec(features, pixels)
    spec.check()
    if memory_mb <= 0:
        raise UserError(f"--memory-mb {memory_mb:g}: give a positive size")
    if batch < 1:
        raise UserError(f"--batch {batch}: give at least 1")
    dev = pick_device(device)
    prec = check_precision(precision, dev)
    models = load_models(lab, refs, layers, dev)
    slices = load_slices(lab, data)
    samples = checkpoint_samples(slices, models.models[0], models.extra)
    batches, subjects = eval_batches(samples, split, batch=batch)
    if not subjects:
        raise UserError(f"data set {data!r} has no {split} subjects to compare on")
    if name is None:
        base = "cka-" + "-".join(_stem(r) for r in refs)
        name = lab.unique_name("comparisons", "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in base)[:90])
    with lab.claim("comparisons", name, new=True) as path:
        start = time.perf_counter()
        linear, debiased, widths, rows, passes = measure(
            models, batches, spec, device=dev, precision=prec, memory_mb=memory_mb, report=report
        )
        options = {"layers": layers, "features": features, "pixels": pixels, "batch": batch, "precision": prec}
        sim = Similarity(
            models=list(refs),
            layers=[layer.name for layer in models.layers],
            index=[layer.index for layer in models.layers],
            pairs=list(itertools.combinations(range(len(refs)), 2)),
            linear=linear,
            debiased=debiased,
            channels=widths,
            data=data,
            split=split,
            features=features,
            pixels=pixels if features == "pixels" else 0,
            size=int(samples.size),
            samples=rows,
            seconds=time.perf_counter() - start,
            passes=passes,
            name=name,
            options=options,
        )
        write_similarity(
            path,
            sim,
            {"models": list(refs), "data": data, "split": split, "dims": spatial_dims(models.models[0]), **options},
        )
    report(Finished("cka", name, sim.seconds))
    return sim
