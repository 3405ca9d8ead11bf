"""Low precision where it is cheap, fp32 where a pixel's class is decided: the class-score layers.

Under bf16 autocast the convolution that produces the class scores rounds them to 8 mantissa bits,
so pixels where two scores almost tie can flip class. The head convolutions are recomputed in fp32
from the bf16 activations they get: a forward hook, so it works the same in the full forward, the
traced partial forward, and for any user model. Heads are the convolutions and linear layers with
one output channel per class. What it buys (bench/scan.py, Intel Xeon with AMX): max |dDice| of a
1-epoch UNet 0.0009 -> 0.0001; trained PSPNet 0.0014 -> 0.0012; trained UNet 0.0172 -> 0.0173, so
a trained UNet's bf16 error comes from its body, not its head: from batch norms cancelling the
bf16-rounded conv outputs, which scans remove by folding (engine/swaps/fold.py). It costs about
3-5% of a bf16 scan.
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
