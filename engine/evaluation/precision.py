"""Low precision where it is cheap, fp32 where a pixel's class is decided: the class-score layers.

Under bf16 autocast the convolution that produces the class scores rounds them to 8 mantissa bits,
so pixels where two scores almost tie can flip class. The head convolutions compute in fp32 from
the bf16 activations they get: their `forward` is replaced for the block, so it works the same in
the full forward, the traced partial forward, and for any user model. Heads are the convolutions
and linear layers with one output channel per class. What it buys (bench/scan.py, Intel Xeon with AMX): max |dDice| of a
1-epoch UNet 0.0009 -> 0.0001; trained PSPNet 0.0014 -> 0.0012; trained UNet 0.0172 -> 0.0173, so
a trained UNet's bf16 error comes from its body, not its head: from batch norms cancelling the
bf16-rounded conv outputs, which scans remove by folding (engine/swaps/fold.py). It costs about
4-13% of a bf16 scan (the input cast; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

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


def _in_fp32(forward: Callable[..., Any]) -> Callable[..., Any]:
    """`forward` with autocast off and its floating-point inputs in fp32: computed once, in fp32
    (a forward hook would let autocast compute the head in bf16 first, then compute it again)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if not tensors:
            return forward(*args, **kwargs)
        with torch.autocast(device_type=tensors[0].device.type, enabled=False):
            return forward(*tree_map(_fp32, args), **tree_map(_fp32, kwargs))

    return run


def _fp32(value: Any) -> Any:
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


@contextmanager
def exact_heads(model: nn.Module, classes: int, precision: str) -> Iterator[list[nn.Module]]:
    """Within the block, the heads of `model` compute in fp32 under bf16/fp16 autocast (nothing
    changes for fp32); yields the heads found. Each head's `forward` is replaced on the instance for
    the block (so every caller, the traced graph's included, gets it) and given back after."""
    if precision == "fp32":
        yield []
        return
    found = heads(model, classes)
    own = [m.__dict__.get("forward") for m in found]  # a forward set on the instance before us
    for module in found:
        module.forward = _in_fp32(module.forward)
    try:
        yield found
    finally:
        for module, forward in zip(found, own):
            del module.forward
            if forward is not None:
                module.forward = forward
