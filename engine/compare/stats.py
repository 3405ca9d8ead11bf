"""Tensor statistics for browsing a model's layers: mean, std, min, max, L2 norm and a histogram.

The console's Layers screen shows these per tensor (layer x kind) and, when a second checkpoint
is chosen, each tensor's RMSE to it (from engine.compare). They are computed here, not in the
UI, so the CLI and scripts see the same numbers. Statistics are over all elements in float64; std is the
population standard deviation (divide by n), so a one-element tensor has std 0.

The console imports this module's dataclasses at start, before torch is needed: the functions
import the model and comparison modules (and so torch) when they are called.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

if TYPE_CHECKING:  # torch is imported where it is used, so the console starts without it
    import torch

    from reuse_console.engine.models.layers import LayerIndex

HIST_BINS = 16


@dataclass(frozen=True)
class TensorStats:
    """Summary of one tensor; `hist` counts elements in `bins` equal bins over [min, max]."""

    numel: int
    mean: float
    std: float
    min: float
    max: float
    l2: float
    hist: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "numel": self.numel,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "l2": self.l2,
            "hist": list(self.hist),
        }


def tensor_stats(tensor: torch.Tensor, bins: int = HIST_BINS) -> TensorStats:
    """Statistics of `tensor` (any shape and float dtype, any device)."""
    import torch

    x = tensor.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    n = x.numel()
    if n == 0:
        return TensorStats(0, math.nan, math.nan, math.nan, math.nan, 0.0, tuple([0] * bins))
    lo, hi = float(x.min()), float(x.max())
    if hi > lo:
        # torch.histc puts x == hi in the last bin, matching numpy.histogram's closed last edge
        hist = torch.histc(x, bins=bins, min=lo, max=hi)
        counts = tuple(int(c) for c in hist.round().to(torch.int64))
    else:
        counts = tuple(n if i == bins // 2 else 0 for i in range(bins))
    mean = float(x.mean())
    return TensorStats(
        numel=n,
        mean=mean,
        std=float(x.std(correction=0)) if n > 1 else 0.0,
        min=lo,
        max=hi,
        l2=float(torch.linalg.vector_norm(x)),
        hist=counts,
    )


@dataclass(frozen=True)
class KindStats:
    """One tensor of one layer: its kind, state-dict key, shape, statistics, and RMSE to the other model."""

    kind: str
    key: str
    shape: tuple[int, ...]
    stats: TensorStats
    rmse: float | None = None
    rel_rmse: float | None = None  # RMSE divided by this tensor's RMS (None when that RMS is 0)


@dataclass(frozen=True)
class LayerStats:
    """A layer of the index with the statistics of each of its kinds."""

    index: int | None
    name: str
    modules: tuple[str, ...]
    kinds: tuple[KindStats, ...] = field(default_factory=tuple)

    @property
    def max_rel_rmse(self) -> float | None:
        """The largest relative RMSE over the layer's kinds (None without a comparison)."""
        values = [k.rel_rmse for k in self.kinds if k.rel_rmse is not None and not math.isnan(k.rel_rmse)]
        return max(values) if values else None


def layer_stats(
    index: LayerIndex,
    state: Mapping[str, torch.Tensor],
    other: Mapping[str, torch.Tensor] | None = None,
    bins: int = HIST_BINS,
) -> list[LayerStats]:
    """Statistics of every tensor of every layer of `index`, read from `state`.

    With `other` (a second model's state dict of the same architecture), each tensor also gets
    its RMSE to the other model's tensor and that RMSE relative to its own RMS, computed by
    `engine.compare.compare_states` (the RMSE of `reuse-console rmse`).
    """
    from reuse_console.engine.models.layers import KINDS

    comparison = None
    if other is not None:
        from reuse_console.engine.compare.rmse import compare_states

        comparison = compare_states([state, other], index.layers, KINDS, ["checkpoint", "compared"])
    out: list[LayerStats] = []
    for li, layer in enumerate(index.layers):
        kinds: list[KindStats] = []
        for kind, key in layer.keys().items():
            tensor = state[key]
            rmse = rel = None
            if comparison is not None:
                ki = comparison.kinds.index(kind)
                rmse = finite_or_none(comparison.rmse[0, li, ki])
                rel = finite_or_none(comparison.relative[0, li, ki])
            kinds.append(KindStats(kind, key, tuple(tensor.shape), tensor_stats(tensor, bins), rmse, rel))
        out.append(LayerStats(layer.index, layer.name, tuple(layer.modules), tuple(kinds)))
    return out


@dataclass(frozen=True)
class CheckpointLayers:
    """What the Layers screen shows for a checkpoint: its meta and per-layer statistics."""

    checkpoint: str
    arch: str
    task: str
    data: str
    compare_with: str | None
    layers: list[LayerStats]


def checkpoint_layers(lab: Lab, checkpoint: str, compare_with: str | None = None) -> CheckpointLayers:
    """Load a checkpoint (and optionally a second one), index its layers and compute statistics."""
    from reuse_console.engine.models.layers import LayerIndex
    from reuse_console.engine.models.registry import load_model, model_in_channels

    model, meta = load_model(lab, checkpoint, device="cpu")
    index = LayerIndex.from_model(model, model_in_channels(meta.arch_config))
    state = model.state_dict()
    other_state = None
    if compare_with:
        other, other_meta = load_model(lab, compare_with, device="cpu")
        if other_meta.arch != meta.arch:
            raise UserError(
                f"{compare_with} is a {other_meta.arch} but {checkpoint} is a {meta.arch}: nothing to compare"
            )
        other_state = other.state_dict()
    return CheckpointLayers(
        checkpoint=checkpoint,
        arch=meta.arch,
        task=meta.task,
        data=meta.data,
        compare_with=compare_with,
        layers=layer_stats(index, state, other_state),
    )
