"""Aligned RMSE and CKA of two checkpoints per layer, in memory (the Layers screen's compare-with).

Raw RMSE compares channel i with channel i; for models from different seeds that is noise. This
aligns the second checkpoint to the first (weight matching, checked on the batches, as `scan
--align` does) and gives each tensor's RMSE after alignment, and the linear CKA of every layer's
activations (pooled features) on the first checkpoint's data set (`val` slices). Without a data set
in the lab the alignment is checked on a random batch and CKA is left out with a note.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.compare.align_states import aligned_donor
from reuse_console.engine.compare.cka_lab import Models, measure
from reuse_console.engine.compare.features import FeatureSpec
from reuse_console.engine.compare.rmse import compare_states
from reuse_console.engine.core.device import pick_device
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches
from reuse_console.engine.models.layers import Layer, LayerIndex
from reuse_console.engine.models.layout import spatial_dims, with_layout
from reuse_console.engine.models.registry import load_model, model_in_channels
from reuse_console.engine.swaps.swap import check_compatible, in_model_order
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.lab import Lab


@dataclass
class LayerSimilarity:
    """Per state-dict key: RMSE and relative RMSE after alignment; per layer name: linear CKA."""

    checkpoint: str
    other: str
    aligned: dict[str, float] = field(default_factory=dict)
    aligned_relative: dict[str, float] = field(default_factory=dict)
    cka: dict[str, float] = field(default_factory=dict)
    data: str = ""
    notes: list[str] = field(default_factory=list)


def pair_cka(
    model: nn.Module,
    other: nn.Module,
    layers: Sequence[Layer],
    batches: Sequence[Any],
    *,
    names: tuple[str, str] = ("a", "b"),
    extra: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Linear CKA (pooled features) of two models of one architecture per layer name."""
    dev = pick_device(device)
    models = [with_layout(copy.deepcopy(m).to(dev).eval(), dev) for m in (model, other)]
    both = Models(list(names), models, list(layers), [list(layers), list(layers)], dict(extra or {}))
    linear, _, _, _, _ = measure(both, list(batches), FeatureSpec(), device=dev)
    return {layer.name: float(linear[0, li]) for li, layer in enumerate(layers)}


def _per_key(comp: Any, index: LayerIndex) -> tuple[dict[str, float], dict[str, float]]:
    rmse: dict[str, float] = {}
    relative: dict[str, float] = {}
    for li, name in enumerate(comp.layers):
        layer = index.get(name)
        for ki, kind in enumerate(comp.kinds):
            if kind in layer.kinds and np.isfinite(comp.rmse[0, li, ki]):
                rmse[layer.key(kind)] = float(comp.rmse[0, li, ki])
                relative[layer.key(kind)] = float(comp.relative[0, li, ki])
    return rmse, relative


def layer_similarity(lab: Lab, checkpoint: str, other: str, *, batch: int = 32) -> LayerSimilarity:
    """Aligned RMSE per tensor and CKA per layer of `other` against `checkpoint` (CPU)."""
    model, meta = load_model(lab, checkpoint, device="cpu")
    second, other_meta = load_model(lab, other, device="cpu")
    state = in_model_order(model.state_dict(), model)
    other_state = in_model_order(second.state_dict(), model)
    check_compatible(
        state, other_state, recipient_arch=meta.arch, donor_arch=other_meta.arch, names=(checkpoint, other)
    )
    size = min(64, int(meta.extra.get("size") or 64))
    index = LayerIndex.from_model(model, model_in_channels(meta.arch_config), size=size)
    out = LayerSimilarity(checkpoint, other, data=meta.data or "")
    batches: list[Any] = []
    try:
        if not meta.data:
            raise NotFound(f"{checkpoint} names no data set")
        samples = checkpoint_samples(load_slices(lab, meta.data), model, meta.extra)
        batches, _ = eval_batches(samples, "val", batch=batch)
    except (NotFound, UserError) as exc:
        out.notes.append(f"CKA left out: {exc}")
    if batches:
        inputs = [b.images for b in batches]
    else:
        dims = spatial_dims(model) or 2
        g = torch.Generator().manual_seed(0)
        inputs = [torch.randn((2, model_in_channels(meta.arch_config), *([size] * dims)), generator=g)]
    try:
        aligned = aligned_donor(model, state, other_state, inputs)
        comp = compare_states([state, aligned], index.layers, models=[checkpoint, other])
        out.aligned, out.aligned_relative = _per_key(comp, index)
    except UserError as exc:
        out.notes.append(f"aligned RMSE left out: {exc}")
    if batches:
        out.cka = pair_cka(model, second, index.layers, batches, names=(checkpoint, other), extra=meta.extra)
    return out
