"""A convolution and the batch norm after it run as one convolution, folded from the live tensors.

Why, in low precision: under bf16 autocast a convolution's output is rounded to 8 mantissa bits
before its batch norm subtracts the running mean and divides by the running std. Where a channel's
mean is large against its std, that subtraction cancels the leading bits and the division blows
the rounding error up: on a trained UNet this, not the class-score head, is what moved a scan's
Dice by 0.017 (bench/scan.py, Intel Xeon with AMX). Folded, the convolution accumulates in fp32
and is rounded once, after normalising: the worst variant's error drops to 0.002. It also saves
the norm's pass over the activation.

The fold is computed at every call from the modules' current tensors, so a swap of any of the
conv's or the norm's tensors (W, B, RM, RV, RW, RB) is honoured; it is only used while the norm
uses its running statistics and neither module has hooks (recalibration's train-mode norms, the
fp32 class-score hook); otherwise the two modules run as the user built them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

Conv = nn.Conv1d | nn.Conv2d | nn.Conv3d

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


class ConvNorm:
    """`norm(conv(x))` as one convolution whenever the norm is in eval mode with running stats."""

    def __init__(self, conv: Conv, norm: _BatchNorm, conv_path: str, norm_path: str) -> None:
        self.conv, self.norm = conv, norm
        self.paths = (conv_path, norm_path)
        self.__name__ = f"conv_norm[{conv_path}+{norm_path}]"  # fx prints call_function targets by name

    def folds(self) -> bool:
        """Whether the next call folds (else it runs both modules)."""
        norm = self.norm
        stats = norm.running_mean is not None and norm.running_var is not None
        return stats and not norm.training and not _hooked(self.conv) and not _hooked(norm)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolution's weight and bias with the norm folded in (fp32 arithmetic)."""
        conv, norm = self.conv, self.norm
        weight, mean, var = conv.weight, norm.running_mean, norm.running_var
        assert mean is not None and var is not None  # folds() checked it
        scale = torch.rsqrt(var.float() + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -mean * scale
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        return weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), shift

    def __call__(self, x: torch.Tensor) -> Any:
        if not self.folds():
            return self.norm(self.conv(x))
        weight, bias = self.folded()
        return self.conv._conv_forward(x, weight, bias)


def _foldable_pair(conv: nn.Module, norm: nn.Module) -> bool:
    # exact types: a subclass may change its forward (weight standardisation, say)
    if type(conv) not in CONVS or type(norm) not in NORMS:
        return False
    return norm.num_features == conv.out_channels and bool(norm.track_running_stats)


def fold_conv_norms(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> dict[fx.Node, tuple[str, ...]]:
    """Replace every conv -> batch-norm pair (the norm the conv's only user, on the conv output
    alone) by one `ConvNorm` call; returns each new node with the module paths it runs."""
    owners: dict[fx.Node, tuple[str, ...]] = {}
    for norm_node in list(gm.graph.nodes):
        if norm_node.op != "call_module" or len(norm_node.args) != 1 or norm_node.kwargs:
            continue
        conv_node = norm_node.args[0]
        if not isinstance(conv_node, fx.Node) or conv_node.op != "call_module" or len(conv_node.users) != 1:
            continue
        if len(conv_node.args) != 1 or conv_node.kwargs:
            continue
        conv, norm = modules[str(conv_node.target)], modules[str(norm_node.target)]
        if not _foldable_pair(conv, norm):
            continue
        assert isinstance(conv, CONVS) and isinstance(norm, _BatchNorm)  # _foldable_pair checked the types
        fused = ConvNorm(conv, norm, str(conv_node.target), str(norm_node.target))
        with gm.graph.inserting_before(norm_node):
            node = gm.graph.call_function(fused, conv_node.args)
        norm_node.replace_all_uses_with(node)
        gm.graph.erase_node(norm_node)
        gm.graph.erase_node(conv_node)
        owners[node] = fused.paths
    return owners
