"""An fx graph recorded from one real forward pass, for models whose code torch.fx cannot trace.

torch.fx runs a module's Python code on proxies, so code that branches on its inputs
(`torch.jit.isinstance(x_e, torch.Tensor)` and the shape checks of MONAI's `UpCat`) either takes
the branch a proxy selects or fails. Recording runs the model on a real tensor instead: every torch
function and tensor method called outside torch.nn's own modules becomes a call_function node (seen
through a TorchFunctionMode), every call of a torch.nn module a call_module node (seen through
forward hooks), so the graph holds exactly the operations this input took, with module paths as in
the model's state dict. Python values computed on the way (shapes, paddings) are baked in as
constants: the graph is for inputs of this spatial size, which is all the permutation analysis and
activation matching need.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

# tensor dunder methods as the operator functions the channel rules know; r-forms swap operands
_OPERATORS: dict[Any, tuple[Any, bool]] = {
    torch.Tensor.__getitem__: (operator.getitem, False),
    torch.Tensor.__add__: (operator.add, False),
    torch.Tensor.__radd__: (operator.add, True),
    torch.Tensor.__iadd__: (operator.iadd, False),
    torch.Tensor.__sub__: (operator.sub, False),
    torch.Tensor.__rsub__: (operator.sub, True),
    torch.Tensor.__mul__: (operator.mul, False),
    torch.Tensor.__rmul__: (operator.mul, True),
    torch.Tensor.__imul__: (operator.imul, False),
    torch.Tensor.__truediv__: (operator.truediv, False),
    torch.Tensor.__rtruediv__: (operator.truediv, True),
    torch.Tensor.__neg__: (operator.neg, False),
}


class _Recorder(TorchFunctionMode):
    """Builds the graph while the model runs; `depth` > 0 inside a torch.nn module (one node)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.graph = fx.Graph()
        self.nodes: dict[int, fx.Node] = {}
        self.alive: list[Any] = []  # every value mapped by id, kept so that no id is reused
        self.depth = 0
        self.attrs: dict[str, Any] = {}
        self.params = {id(t): name for name, t in model.state_dict(keep_vars=True).items()}
        self.constants = 0

    def remember(self, value: Any, node: fx.Node) -> None:
        """`value` (a tensor, or a tuple or list of them) is now node `node`'s output."""
        if isinstance(value, torch.Tensor):
            self.nodes[id(value)] = node
            self.alive.append(value)
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    self.remember(item, self.graph.call_function(operator.getitem, (node, i)))

    def arg(self, value: Any) -> Any:
        """A node for every tensor in `value` (an attribute node for parameters and stray tensors)."""

        def one(v: Any) -> Any:
            if not isinstance(v, torch.Tensor):
                return v
            if id(v) in self.nodes:
                return self.nodes[id(v)]
            name = self.params.get(id(v))
            if name is None:
                name = f"_recorded_constant_{self.constants}"
                self.constants += 1
            self.attrs[name] = v
            node = self.graph.get_attr(name)
            self.remember(v, node)
            return node

        return tree_map(one, value)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth or not any(isinstance(v, torch.Tensor) for v in tree_flatten(out)[0]):
            return out  # inside a module's own code, or a shape, a dtype, a bool: not a graph value
        target, swap = _OPERATORS.get(func, (func, False))
        call_args = self.arg(tuple(reversed(args)) if swap else tuple(args))
        self.remember(out, self.graph.call_function(target, call_args, self.arg(kwargs)))
        return out


def _is_leaf(module: nn.Module, name: str) -> bool:
    return fx.Tracer().is_leaf_module(module, name)


def record(model: nn.Module, x: torch.Tensor) -> fx.GraphModule:
    """The graph of `model`'s forward on `x`, as it ran (eval mode and no_grad are the caller's)."""
    rec = _Recorder(model)
    hooks = []
    for name, module in model.named_modules():
        if not name or not _is_leaf(module, name):
            continue

        def enter(mod: nn.Module, args: Any, kwargs: Any) -> None:
            rec.depth += 1

        def leave(mod: nn.Module, args: Any, kwargs: Any, out: Any, name: str = name) -> None:
            rec.depth -= 1
            if rec.depth == 0:
                rec.attrs[name] = mod
                rec.remember(out, rec.graph.call_module(name, rec.arg(tuple(args)), rec.arg(kwargs)))

        hooks.append(module.register_forward_pre_hook(enter, with_kwargs=True))
        hooks.append(module.register_forward_hook(leave, with_kwargs=True))
    placeholder = rec.graph.placeholder("x")
    rec.remember(x, placeholder)
    try:
        with rec:
            out = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    rec.graph.output(rec.arg(out))
    gm = fx.GraphModule(rec.attrs, rec.graph, type(model).__name__)
    gm.graph.eliminate_dead_code()  # values only Python looked at (a comparison in an `if`)
    gm.recompile()
    return gm


def rebound(gm: fx.GraphModule, model: nn.Module) -> fx.GraphModule:
    """`gm`'s graph over `model`'s modules and parameters (another model of the same architecture);
    recorded constants stay `gm`'s."""
    attrs: dict[str, Any] = {}
    for node in gm.graph.nodes:
        if node.op in ("call_module", "get_attr"):
            target = str(node.target)
            try:
                attrs[target] = _lookup(model, target)
            except AttributeError:  # a constant of the graph's own (fx's _tensor_constant, a recorded one)
                attrs[target] = _lookup(gm, target)
    return fx.GraphModule(attrs, gm.graph, gm.__class__.__name__)


def _lookup(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
