"""How each graph operation carries channel layouts (used by perm_spec's walk over the fx graph).

A rule takes the node, its real output and the analysis (which knows every input's layout) and
returns the output's layout, recording on the way which tensor axes each group permutes. Only
operations whose effect on channels is known are allowed on channels that could be permuted;
anything else on such channels stops the analysis naming the node. Operations on channels that
are never permuted (the input image, say) are always fine: their output is never permuted either.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

if TYPE_CHECKING:
    from reuse_console.engine.compare.perm_spec import Layout, _Analysis

# elementwise or spatial-only operations: output channel c depends on input channel c alone
_PASS_NAMES = {
    "relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "elu", "selu", "celu", "leaky_relu", "hardswish",
    "hardsigmoid", "hardtanh", "softplus", "mish", "prelu_", "dropout", "dropout2d", "dropout3d",
    "alpha_dropout", "feature_alpha_dropout", "clamp", "clip", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
    "square", "contiguous", "float", "double", "half", "bfloat16", "to", "type_as", "clone", "detach",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "interpolate", "upsample", "upsample_bilinear",
    "upsample_nearest", "softmax", "log_softmax", "channels_last", "requires_grad_",
}  # fmt: skip
_BINARY_NAMES = {"add", "sub", "mul", "truediv", "div", "iadd", "isub", "imul", "itruediv", "maximum", "minimum",
                 "where", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
                 "add_", "mul_", "sub_", "div_", "pow", "__pow__"}  # fmt: skip
_RESHAPE_NAMES = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
_SHAPE_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.pooling.MaxPool1d, nn.modules.pooling.MaxPool2d, nn.modules.pooling.MaxPool3d,
    nn.modules.pooling.AvgPool1d, nn.modules.pooling.AvgPool2d, nn.modules.pooling.AvgPool3d,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd, nn.Upsample, nn.Identity, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd, nn.Softmax, nn.LogSoftmax,
)  # fmt: skip


def _name(node: fx.Node) -> str:
    if node.op == "call_method":
        return str(node.target)
    return getattr(node.target, "__name__", str(node.target)).lstrip("_") if node.target is not operator.getitem else ""


def channel_rule(an: _Analysis, node: fx.Node, value: torch.Tensor) -> Layout:
    """The layout of `node`'s output `value` (a tensor), recording tensor axes on the way."""
    if node.op == "call_module":
        return _module_rule(an, node, an.modules[str(node.target)], value)
    inputs = _tensor_inputs(an, node)
    if all(g is None for _, lay, _ in inputs for g, _ in lay):
        return an.fixed(_channels(value))  # nothing permutable goes in, nothing comes out
    name = _name(node)
    first = inputs[0][1]
    if node.target is operator.getitem:
        return _getitem(an, node, first)
    if name == "cat" or name == "concat" or name == "concatenate":
        return _cat(an, node, value)
    if name in _PASS_NAMES:
        return first
    if name.strip("_") in _BINARY_NAMES or name in _BINARY_NAMES:
        return _elementwise(an, inputs)
    if name in _RESHAPE_NAMES or name in {"mean", "sum", "amax", "amin"}:
        src = inputs[0][2]
        if value.ndim >= 2 and value.shape[:2] == src.shape[:2]:
            return first  # batch and channels kept, spatial axes reshaped or reduced
        if value.ndim == 2 and src.shape[1] == value.shape[1] and src[0, 0].numel() == 1:
            return first  # (B, C, 1, 1) flattened to (B, C)
    if name == "pad":
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad", ())
        if isinstance(pad, (list, tuple)) and len(pad) <= 2 * (value.ndim - 2):
            return first  # spatial axes only
    an.stop("changes channels in a way alignment does not know")
    raise AssertionError  # stop() raises


def _channels(value: torch.Tensor) -> int:
    return int(value.shape[1]) if value.ndim >= 2 else 1


def _tensor_inputs(an: _Analysis, node: fx.Node) -> list[tuple[fx.Node, Layout, torch.Tensor]]:
    """Input nodes with a tensor layout, in argument order, with their example shapes."""
    out: list[tuple[fx.Node, Layout, torch.Tensor]] = []

    def visit(n: fx.Node) -> fx.Node:
        lay = an.layouts.get(n)
        if isinstance(lay, tuple) and (val := an.values.get(n)) is not None:
            out.append((n, lay, val))
        return n

    fx.node.map_arg((node.args, node.kwargs), visit)
    return out


def _elementwise(an: _Analysis, inputs: list[tuple[fx.Node, Layout, torch.Tensor]]) -> Layout:
    """Operands with more than one channel share one layout (a residual add joins their groups)."""
    wide = [(lay, val) for _, lay, val in inputs if val.ndim >= 2 and val.shape[1] > 1]
    if not wide:
        return inputs[0][1]
    out = wide[0][0]
    for lay, _ in wide[1:]:
        out = an.join(out, lay)
    return out


def _cat(an: _Analysis, node: fx.Node, value: torch.Tensor) -> Layout:
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    assert isinstance(tensors, (list, tuple)) and isinstance(dim, int)
    layouts = [an.layouts[t] for t in tensors if isinstance(t, fx.Node)]
    if dim % value.ndim == 1:
        return tuple(seg for lay in layouts for seg in lay)  # channels of each source, in order
    out = layouts[0]
    for lay in layouts[1:]:
        out = an.join(out, lay)
    return out


def _getitem(an: _Analysis, node: fx.Node, layout: Layout) -> Layout:
    """Indexing that keeps every channel (x[:, :, 1:-1], x[0:1]) keeps the layout."""
    index = node.args[1]
    items = index if isinstance(index, tuple) else (index,)
    if items and items[0] is not Ellipsis and items[0] is not None:
        if len(items) < 2 or items[1] == slice(None):
            return layout
    an.stop("indexes channels that could be permuted")
    raise AssertionError


def _module_rule(an: _Analysis, node: fx.Node, module: nn.Module, value: torch.Tensor) -> Layout:
    path = str(node.target)
    inputs = _tensor_inputs(an, node)
    if not inputs:
        an.stop("has no tensor input")
    layout, x = inputs[0][1], inputs[0][2]
    if isinstance(module, nn.modules.conv._ConvNd):
        return _conv(an, path, module, layout)
    if isinstance(module, nn.Linear):
        if x.ndim != 2:
            an.stop("applies Linear to a tensor whose channels are not its last axis")
        an.assign(f"{path}.weight", 1, layout)
        out = an.fresh(path, module.out_features)
        an.assign(f"{path}.weight", 0, out)
        an.assign(f"{path}.bias", 0, out)
        return out
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.PReLU)):
        return _norm(an, path, module, layout, x)
    if isinstance(module, _SHAPE_MODULES) or type(module).__module__ == "torch.nn.modules.activation":
        if any(True for _ in module.parameters()):
            an.stop(f"is a {type(module).__name__} with parameters, which alignment does not know")
        return layout
    if isinstance(module, nn.Flatten) and value.ndim == 2 and x.ndim >= 2 and x[0, 0].numel() == 1:
        return layout
    if all(g is None for _, lay, _ in inputs for g, _ in lay) and not any(True for _ in module.parameters()):
        return an.fixed(_channels(value))
    kind = type(module).__name__
    if not type(module).__module__.startswith("torch.nn"):
        an.stop(
            f"calls {kind}, whose own code torch.fx does not trace the way it runs, so its channels cannot be followed"
        )
    an.stop(f"calls {kind}, which alignment does not know")
    raise AssertionError


def _conv(an: _Analysis, path: str, conv: nn.modules.conv._ConvNd, layout: Layout) -> Layout:
    w = f"{path}.weight"
    in_axis, out_axis = (0, 1) if conv.transposed else (1, 0)
    if conv.groups == 1:
        an.assign(w, in_axis, layout)
        out = an.fresh(path, conv.out_channels)
        an.assign(w, out_axis, out)
        an.assign(f"{path}.bias", 0, out)
        return out
    if conv.groups == conv.in_channels == conv.out_channels:  # depthwise: channel c stays channel c
        an.assign(w, 0, layout)
        an.assign(f"{path}.bias", 0, layout)
        return layout
    an.fix(layout)  # other grouped convs: channels stay in their groups, so none is permuted
    return an.fixed(conv.out_channels)


def _norm(an: _Analysis, path: str, norm: nn.Module, layout: Layout, x: torch.Tensor) -> Layout:
    if isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) != x.ndim - 1:
        an.stop("applies LayerNorm over trailing axes, not over the channels")
    if isinstance(norm, nn.GroupNorm) and 1 < norm.num_groups < norm.num_channels:
        if len(layout) == 1 and layout[0][0] is not None:
            an.groups.set_blocks(layout[0][0], norm.num_groups)
        else:
            an.fix(layout)  # blocks across several sources: keep those channels in place
    if isinstance(norm, nn.PReLU) and norm.num_parameters == 1:
        return layout
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        an.assign(f"{path}.{leaf}", 0, layout)
    return layout
