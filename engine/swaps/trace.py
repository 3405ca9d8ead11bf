"""Tracing a model for partial re-execution, keeping modules that trace wrongly as opaque steps.

torch.fx runs a module's Python code on proxies. Code that inspects its inputs in Python
(`torch.jit.isinstance(x, torch.Tensor)`, `isinstance`, shape-dependent padding) takes the branch
a proxy selects, which need not be the one a real tensor selects: the trace then succeeds but
computes something else (MONAI's `UpCat` drops its skip connection that way, so the next conv
gets half its channels). Such a module is found by checking, deepest first, each module's own
trace against the inputs and output its real forward saw; one that disagrees (or does not
trace) becomes a leaf of the final trace, called as the model calls it. Its parameters are still
found (a change inside it re-runs it whole), so the fast path keeps working around it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import fx, nn
from torch.utils._pytree import tree_flatten, tree_map


class _Tracer(fx.Tracer):
    """fx's tracer with some modules (by identity) kept as leaves."""

    def __init__(self, opaque: Collection[nn.Module] = ()) -> None:
        super().__init__()
        self._opaque = {id(m) for m in opaque}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return id(m) in self._opaque or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, opaque: Collection[nn.Module] = ()) -> fx.GraphModule:
    """The fx graph of `model`, with the `opaque` modules as single call_module nodes."""
    tracer = _Tracer(opaque)
    graph = tracer.trace(model)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)


def outputs_agree(a: Any, b: Any, rtol: float, atol: float) -> bool:
    """Whether two model outputs (tensors, or nests of them) have the same structure and values."""
    flat_a, spec_a = tree_flatten(a)
    flat_b, spec_b = tree_flatten(b)
    if spec_a != spec_b:
        return False
    for x, y in zip(flat_a, flat_b):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or not torch.allclose(x.float(), y.float(), rtol=rtol, atol=atol):
                return False
        elif isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) or x != y:
            return False
    return True


def _copy(value: Any) -> Any:
    return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, value)


def _depth(name: str) -> int:
    return 0 if not name else name.count(".") + 1


def opaque_modules(model: nn.Module, x: Any, rtol: float, atol: float) -> list[nn.Module] | None:
    """The modules of `model` whose own trace disagrees with their forward on `x` (deepest first).

    None when the model's own code (not only some of its modules) does not trace right: then
    nothing can be re-run partially.
    """
    calls: dict[str, tuple[Any, Any, Any]] = {}
    hooks = []
    for name, module in model.named_modules():

        def record(mod: nn.Module, args: Any, kwargs: Any, out: Any, name: str = name) -> None:
            calls.setdefault(name, (_copy(args), _copy(kwargs), _copy(out)))  # later in-place ops may change them

        hooks.append(module.register_forward_hook(record, with_kwargs=True))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    leaf = fx.Tracer()
    opaque: list[nn.Module] = []
    for name in sorted(calls, key=_depth, reverse=True):
        module = modules[name]
        if name and leaf.is_leaf_module(module, name):
            continue
        args, kwargs, out = calls[name]
        try:
            same = outputs_agree(trace(module, opaque)(*_copy(args), **_copy(kwargs)), out, rtol, atol)
        except Exception:
            same = False
        if not same:
            if not name:
                return None
            opaque.append(module)
    return opaque
