"""A layer's activations reduced, in the forward hook, to the feature rows CKA compares.

The activation read is the layer's output after its norm (the norm module's output; the conv's
for a layer without a norm, such as `up1` or `head`): the same place the study's swaps act on.
Two units of "sample", chosen with `mode`:

- `pooled` (default): one row per slice (a 3D model: per block), the activation averaged over its
  spatial positions, so p = channels. Per-image features are what CKA on CNNs usually compares;
  averaging keeps p at the channel count, where the full flattened map (C*H*W) would not fit the
  feature-space statistics, and makes the measure blind to where in the image a feature fires.
- `pixels`: `pixels` positions per slice drawn at random (the same positions in every model; seeded
  by batch and layer), each one row of its C channel values: sensitive to the spatial code as well.

Nothing but these rows outlives the hook: the full activation map is freed with the forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reuse_console.engine.models.layers import Layer
from reuse_console.store.errors import UserError

MODES: tuple[str, ...] = ("pooled", "pixels")


@dataclass(frozen=True)
class FeatureSpec:
    """How activations become rows: `pooled` per slice, or `pixels` sampled positions per slice."""

    mode: str = "pooled"
    pixels: int = 64
    seed: int = 0

    def check(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown --features {self.mode!r}: use {' or '.join(MODES)}")
        if self.pixels < 1:
            raise UserError(f"--pixels {self.pixels}: give at least 1 position per slice")

    def rows_per_sample(self) -> int:
        return 1 if self.mode == "pooled" else self.pixels


def hooked_module(layer: Layer) -> str:
    """The module whose output is the layer's activation: its norm, else its conv."""
    path = layer.bn or layer.conv
    assert path is not None  # every indexed layer has one of them
    return path


def to_rows(output: torch.Tensor, spec: FeatureSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, C, *spatial) activations as (rows, C) float64 features (a rank-2 output is its own rows)."""
    out = output.detach()
    if out.ndim <= 2:
        return out.reshape(out.shape[0], -1).to(torch.float64)
    flat = out.flatten(2)  # (B, C, P)
    if spec.mode == "pooled":
        return flat.mean(dim=2, dtype=torch.float64)
    batch, channels, positions = flat.shape
    if spec.pixels >= positions:
        return flat.transpose(1, 2).reshape(-1, channels).to(torch.float64)
    draw = torch.rand(batch, positions, generator=generator).argsort(dim=1)[:, : spec.pixels].to(flat.device)
    picked = flat.gather(2, draw.unsqueeze(1).expand(batch, channels, spec.pixels))  # (B, C, k)
    return picked.transpose(1, 2).reshape(-1, channels).to(torch.float64)


class Capture:
    """Forward hooks on some layers of one model: each forward's feature rows per layer.

    `begin(batch)` before a forward seeds the pixel draws, so every model sees the same positions;
    a module run twice in one forward (a shared block) gives its first run only.
    """

    def __init__(self, model: nn.Module, layers: Sequence[Layer], spec: FeatureSpec, device: torch.device) -> None:
        self.spec, self.device = spec, device
        self.rows: dict[int, torch.Tensor] = {}
        self.shapes: dict[int, tuple[int, ...]] = {}
        self._batch = 0
        modules = dict(model.named_modules())
        self._handles = [
            modules[hooked_module(layer)].register_forward_hook(self._hook(i)) for i, layer in enumerate(layers)
        ]

    def begin(self, batch: int) -> None:
        self._batch = batch
        self.rows, self.shapes = {}, {}

    def _hook(self, slot: int) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if slot in self.rows or not isinstance(output, torch.Tensor):
                return
            generator = None
            if self.spec.mode == "pixels":
                generator = torch.Generator().manual_seed(self.spec.seed * 1_000_003 + self._batch * 1009 + slot)
            self.shapes[slot] = tuple(output.shape[2:])
            self.rows[slot] = to_rows(output, self.spec, generator).to(self.device)

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
