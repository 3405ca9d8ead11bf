"""Low precision where it is cheap and harmless, fp32 where the answer is decided: the heads.

Under bf16 autocast the convolution that produces the class scores rounds them to 8 mantissa bits,
so pixels near a class boundary, where two scores almost tie, flip class; that is where most of a
bf16 scan's Dice error came from (bench/scan.py: max |dDice| 0.0009 -> 0.0001 on UNet, for about
3% more time). The head convolutions are recomputed in fp32 from the bf16 activations they get: a
forward hook, so it works the same in the full forward, the traced partial forward, and for any
user model. Heads are the convolutions and linear layers with one output channel per class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


def heads(model: nn.Module, classes: int) -> list[nn.Module]:
    """The layers that give `classes` output channels (the class scores, deep-supervision heads too)."""
    out: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, LAYERS):
            width = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            if width == classes:
                out.append(module)
    return out


def _again_in_fp32(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dtype == torch.float32:
        return output
    with torch.autocast(device_type=args[0].device.type, enabled=False):
        return module.forward(
            *(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        )


@contextmanager
def exact_heads(model: nn.Module, classes: int, precision: str) -> Iterator[list[nn.Module]]:
    """Within the block, the heads of `model` compute in fp32 under bf16/fp16 autocast (nothing
    changes for fp32); yields the heads found."""
    if precision == "fp32":
        yield []
        return
    found = heads(model, classes)
    handles = [m.register_forward_hook(_again_in_fp32) for m in found]
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()
