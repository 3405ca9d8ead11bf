"""A model's input rank and memory layout: 2D models take slices, 3D models blocks of slices.

One place decides both, so training, evaluation, swaps and scans put a model (and its inputs) in
the same layout: channels_last for 2D convolutions, channels_last_3d for 3D (engine/core/device.py).
"""

from __future__ import annotations

import torch
from torch import nn

from reuse_console.engine.core.device import memory_format


def spatial_dims(model: nn.Module) -> int | None:
    """Spatial axes of the model's input: the kernel rank of its first defined conv (None: no conv).

    2 takes (B, C, H, W) slices, 3 takes (B, C, D, H, W) blocks of slices (engine/data/volumes.py)."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return len(first.kernel_size) if first is not None else None


def with_layout(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with its conv weights in the layout its inputs get (in place; returns it)."""
    dims = spatial_dims(model)
    if dims not in (2, 3):
        return model
    return model.to(memory_format=memory_format(device, dims + 2))
