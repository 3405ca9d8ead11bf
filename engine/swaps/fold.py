"""A convolution with the batch norm and ReLU after it, run as one oneDNN call from the live tensors.

Why fold the norm, in low precision: under bf16 autocast a convolution's output is rounded to 8
mantissa bits before its batch norm subtracts the running mean and divides by the running std.
Where a channel's mean is large against its std, that subtraction cancels the leading bits and
the division blows the rounding error up: on a trained UNet this, not the class-score head, is
what moved a scan's Dice by 0.017 (bench/scan.py, Intel Xeon with AMX). Folded, the convolution
accumulates in fp32 and is rounded once, after normalising: the worst variant's error drops to
0.003. It also saves the norm's pass over the activation. In fp32 folding only reorders rounding.

Why fuse the activation: a ReLU (or leaky ReLU) after a convolution is one more pass over the
activation; oneDNN applies it inside the convolution (`mkldnn._convolution_pointwise`, what
torch.compile's CPU backend calls), bit for bit the same values, in fp32 and bf16 alike.

The fold is computed at every call from the modules' current tensors, so a swap of any of the
conv's or the norm's tensors (W, B, RM, RV, RW, RB) is honoured. It is only used while the norm
uses its running statistics and no module of the chain has hooks (recalibration's train-mode
norms, the fp32 class-score layers); otherwise the modules run as the user built them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F  # noqa: N812 - the usual name
from torch.nn.modules.batchnorm import _BatchNorm

Conv = nn.Conv1d | nn.Conv2d | nn.Conv3d
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_RELUS = (F.relu, torch.relu)


def _hooked(module: nn.Module | None) -> bool:
    """Whether the module has hooks or a forward of its own instance (the fp32 class-score layers):
    calling its parts directly would skip them."""
    if module is None:
        return False
    return bool(module._forward_hooks or module._forward_pre_hooks) or "forward" in vars(module)


def _batched(t: torch.Tensor | None) -> bool:
    return t is not None and torch._C._functorch.is_batchedtensor(t)


def _oneDNN_conv() -> Callable[..., torch.Tensor] | None:  # noqa: N802 - oneDNN is its name
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_convolution_pointwise", None)


class Activation:
    """A ReLU or leaky ReLU that oneDNN can apply inside a convolution (exactly as eager does)."""

    def __init__(self, name: str, slope: float, module: nn.Module | None, call: Callable[[torch.Tensor], Any]) -> None:
        self.name, self.slope, self.module, self.call = name, slope, module, call

    def onednn(self) -> tuple[str, list[float]]:
        return (self.name, []) if self.name == "relu" else (self.name, [self.slope])


class ConvChain:
    """`act(norm(conv(x)))` (norm and act optional) as one convolution whenever it can be."""

    def __init__(self, conv: Conv, conv_path: str, norm: _BatchNorm | None = None, norm_path: str = "") -> None:
        self.conv, self.norm = conv, norm
        self.act: Activation | None = None
        self.paths = (conv_path, norm_path) if norm is not None else (conv_path,)
        self.__name__ = "conv_chain[" + "+".join(self.paths) + "]"  # fx prints call_function targets by name

    def folds(self) -> bool:
        """Whether the next call folds the norm (else the modules run one after the other)."""
        norm = self.norm
        if norm is None:
            return False
        stats = norm.running_mean is not None and norm.running_var is not None
        return stats and not norm.training and not _hooked(self.conv) and not _hooked(norm)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The convolution's weight and bias with the norm folded in (fp32 arithmetic)."""
        conv, norm = self.conv, self.norm
        if norm is None:
            return conv.weight, conv.bias
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
        if self.norm is not None and not self.folds():
            y = self.norm(self.conv(x))
            return self.act.call(y) if self.act is not None else y
        weight, bias = self.folded()
        fused = self._fused(x, weight, bias)
        if fused is not None:
            return fused
        y = self.conv._conv_forward(x, weight, bias)
        return self.act.call(y) if self.act is not None else y

    def _fused(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
        """The convolution and activation in one oneDNN call, or None where it does not apply."""
        conv, act, op = self.conv, self.act, _oneDNN_conv()
        if act is None or op is None or x.device.type != "cpu" or _hooked(act.module) or _hooked(conv):
            return None
        if any(_batched(t) for t in (x, weight, bias)):  # under vmap (stacked variants): the op has no batching rule
            return None
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str) or x.ndim not in (4, 5):
            return None
        if torch.is_autocast_enabled("cpu"):  # the op is not autocast's: cast as F.conv2d would be
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        elif x.dtype != weight.dtype:
            return None
        name, scalars = act.onednn()
        padding, stride, dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        return op(x, weight, bias, padding, stride, dilation, conv.groups, name, scalars, "")


def _activation(node: fx.Node, modules: dict[str, nn.Module]) -> Activation | None:
    """The node as a fusable activation of its first argument alone, or None."""
    if node.op == "call_module":
        module = modules[str(node.target)]
        if len(node.args) != 1 or node.kwargs:
            return None
        if type(module) is nn.ReLU:
            return Activation("relu", 0.0, module, module)
        if type(module) is nn.LeakyReLU:
            return Activation("leaky_relu", float(module.negative_slope), module, module)
        return None
    if node.op == "call_function" and node.target in _RELUS and len(node.args) == 1:
        if node.kwargs in ({}, {"inplace": False}):
            return Activation("relu", 0.0, None, torch.relu)
    if node.op == "call_method" and node.target == "relu" and len(node.args) == 1 and not node.kwargs:
        return Activation("relu", 0.0, None, torch.relu)
    return None


def _sole_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _replace(gm: fx.GraphModule, first: fx.Node, last: fx.Node, chain: ConvChain) -> fx.Node:
    """Put one call of `chain` in place of the nodes from `first` to `last` (a single-user path)."""
    with gm.graph.inserting_before(last):
        node = gm.graph.call_function(chain, first.args)
    last.replace_all_uses_with(node)
    doomed = [last]
    while doomed[-1] is not first:
        doomed.append(doomed[-1].args[0])  # type: ignore[arg-type]
    for n in doomed:
        gm.graph.erase_node(n)
    return node


def fuse_conv_chains(
    gm: fx.GraphModule, modules: dict[str, nn.Module], *, fold: bool
) -> dict[fx.Node, tuple[str, ...]]:
    """Replace each conv [-> batch norm] [-> ReLU] path (each node the previous one's only user,
    on its output alone) by one `ConvChain` call; norms only with `fold`, and a conv neither folds
    nor fuses is left alone. Returns each new node with the module paths it runs."""
    owners: dict[fx.Node, tuple[str, ...]] = {}
    for conv_node in list(gm.graph.nodes):
        if conv_node.op != "call_module" or len(conv_node.args) != 1 or conv_node.kwargs:
            continue
        conv = modules[str(conv_node.target)]
        if type(conv) not in CONVS:  # exact types: a subclass may change its forward (weight standardisation)
            continue
        assert isinstance(conv, CONVS)
        chain, last = ConvChain(conv, str(conv_node.target)), conv_node
        nxt = _sole_user(last)
        if fold and nxt is not None and nxt.op == "call_module" and nxt.args == (last,) and not nxt.kwargs:
            norm = modules[str(nxt.target)]
            if type(norm) in NORMS and isinstance(norm, _BatchNorm) and norm.num_features == conv.out_channels:
                if norm.track_running_stats:
                    chain, last = ConvChain(conv, str(conv_node.target), norm, str(nxt.target)), nxt
                    nxt = _sole_user(last)
        act = _activation(nxt, modules) if nxt is not None and nxt.args[:1] == (last,) else None
        if act is not None and nxt is not None:
            chain.act, last = act, nxt
        if last is not conv_node:
            owners[_replace(gm, conv_node, last, chain)] = chain.paths
    return owners
