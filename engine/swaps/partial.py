"""Partial re-execution: re-run only what a changed tensor can affect, from cached activations.

A scan changes one tensor at a time. Everything computed before that tensor is first used is the
same for every variant, so it is computed once per batch (the *baseline* pass) and the
activations that the changed part reads (its *frontier*: the input of the changed module plus
every skip connection that joins later) are kept. Each variant then re-runs only the nodes
downstream of the changed module.

The model is traced once with torch.fx. A *group* is a set of state-dict keys that variants
change together (e.g. the four BN tensors of one layer, all changed one at a time: they share
their first affected node and so their frontier). For each group we find its start nodes (the
calls of the modules owning those keys, or `get_attr` reads of them), the nodes that depend on
them, and the frontier. The baseline pass walks the graph once and, as soon as a group's
frontier is complete, hands the caller a `Downstream` it may run any number of times (swap a
tensor, run, restore). Activations are freed as soon as neither the baseline nor a pending group
needs them, so memory stays close to one ordinary forward pass.

In-place operations (``nn.ReLU(inplace=True)``, ``x.relu_()``) are rewritten out of place so
that a downstream run can never modify a cached activation. Models that do not trace (Python
control flow on tensor values, unsupported ops) fall back to a full forward per run, with the
reason recorded; the results are the same, only slower. So does any error the traced path
raises (while tracing, building the downstream parts, verifying, or running a variant): the
traced path is only ever a faster way to the model's own output, never a different one.
Modules whose own code traces wrongly are kept whole (engine/swaps/trace.py).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from reuse_console.engine.swaps.fold import fuse_conv_chains
from reuse_console.engine.swaps.trace import opaque_modules, outputs_agree, trace

_INPLACE_FUNCTIONS: dict[Any, Any] = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    torch.relu_: torch.relu,
    torch.sigmoid_: torch.sigmoid,
    torch.tanh_: torch.tanh,
    torch.nn.functional.relu_: torch.nn.functional.relu,
    torch.nn.functional.elu_: torch.nn.functional.elu,
    torch.nn.functional.leaky_relu_: torch.nn.functional.leaky_relu,
    torch.nn.functional.hardtanh_: torch.nn.functional.hardtanh,
}


class NotPartial(Exception):
    """The model cannot be run partially (it does not trace, or its graph cannot be made pure)."""


class PartialFailed(Exception):
    """The traced path raised while running; `reason` says what, the cause is chained."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException) -> str:
    """One line for a provenance record: the exception's type and the first line of its message."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]


def _module_owns(module_path: str, key: str) -> bool:
    """Whether state-dict `key` lives in module `module_path` or one of its submodules."""
    return module_path == "" or key.startswith(module_path + ".")


def _pure_graph(gm: fx.GraphModule) -> dict[str, nn.Module]:
    """Rewrite in-place ops out of place; return the modules to call (in-place ones replaced)."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            if getattr(module, "inplace", False) is True:
                pure = copy.copy(module)
                pure.inplace = False
                modules[node.target] = pure
        elif node.op == "call_function":
            if node.target in _INPLACE_FUNCTIONS:
                node.target = _INPLACE_FUNCTIONS[node.target]
            if node.kwargs.get("inplace") is True:
                node.kwargs = {**node.kwargs, "inplace": False}
            name = getattr(node.target, "__name__", "")
            if name.endswith("_") and not name.startswith("_") and node.target not in _INPLACE_FUNCTIONS.values():
                raise NotPartial(f"in-place function {name} in the traced graph")
        elif node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
            pure_name = node.target[:-1]
            if not hasattr(torch.Tensor, pure_name):
                raise NotPartial(f"in-place method {node.target} has no out-of-place form")
            node.target = pure_name
    return modules


_COMPUTE_OPS = ("call_module", "call_function", "call_method", "get_attr", "output")


def _is_input(node: fx.Node) -> bool:
    """A graph input (fx's op for a forward argument); every other op computes or returns."""
    return node.op not in _COMPUTE_OPS


def _copies(value: Any) -> Any:
    return fx.node.map_aggregate(value, lambda t: t.clone() if isinstance(t, torch.Tensor) else t)


def _fetch_attr(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Group:
    """What one set of changed tensors forces to re-run, and what that re-run reads."""

    name: str
    keys: tuple[str, ...]
    nodes: list[fx.Node]  # the affected nodes in topological order (start nodes first among them)
    frontier: list[fx.Node]  # unaffected nodes the affected ones read
    ready: int  # position in the graph after which the whole frontier is computed
    free_at: dict[int, list[fx.Node]] = field(default_factory=dict)  # step in `nodes` -> affected nodes done with


class Downstream:
    """A re-runnable downstream part of the model for one group, fed by cached activations.

    `run()` may be called many times (once per variant); it reads the current tensors of the
    model, so swap them in place before calling it. The cache is never modified.
    """

    def __init__(self, engine: PartialForward, group: Group | None, env: Mapping[fx.Node, Any], x: Any) -> None:
        self._engine = engine
        self._group = group
        self._env = env
        self._x = x

    @property
    def name(self) -> str:
        return self._group.name if self._group else ""

    def frontier(self) -> dict[str, Any]:
        """The cached activations this part reads, by fx node name (the model input for a full run)."""
        if self._group is None:
            return {"input": self._x}
        return {n.name: self._env[n] for n in self._group.frontier}

    def module_paths(self) -> tuple[str, ...] | None:
        """The modules this part calls (their submodules run too); None: the whole model."""
        if self._group is None:
            return None
        owners = self._engine.owners
        paths: list[str] = []
        for n in self._group.nodes:
            if n.op == "call_module":
                paths.append(str(n.target))
            paths.extend(owners.get(n, ()))
        return tuple(paths)

    def run(self) -> Any:
        """The model output with the model's current tensors."""
        if self._group is None:
            return self._engine.model(self._x)
        try:
            return self._engine._run_group(self._group, self._env)
        except Exception as exc:
            raise PartialFailed(f"a downstream run of {self.name} failed: {describe(exc)}") from exc


Visit = Callable[[str, Downstream], None]


class PartialForward:
    """A model traced once, with one downstream part per group of changed tensors.

    `groups` maps a group name to the state-dict keys its variants change. If tracing fails,
    `partial` is False and `reason` says why; `run` then re-runs the whole model per variant.
    A conv and the ReLU after it run as one oneDNN call; with `fold` a batch norm between them is
    folded in from the current tensors (engine/swaps/fold.py): what bf16 needs to stay close to fp32.
    """

    def __init__(
        self, model: nn.Module, groups: Mapping[str, Collection[str]], *, trace: bool = True, fold: bool = False
    ) -> None:
        self.model = model
        self.group_keys = {name: tuple(keys) for name, keys in groups.items()}
        self.groups: dict[str, Group] = {}
        self.reason = "" if trace else "partial re-execution switched off"
        self.opaque: tuple[str, ...] = ()  # modules kept whole because their own code traces wrongly
        self._trace = trace
        self.fold = fold
        self.owners: dict[fx.Node, tuple[str, ...]] = {}  # folded nodes -> the module paths they run
        self._gm: fx.GraphModule | None = None
        self._opaque_ids: set[int] = set()
        if trace:
            try:
                self._build()
            except Exception as exc:  # any tracing failure means: use the full forward
                self.switch_off(describe(exc))

    @property
    def partial(self) -> bool:
        return self._gm is not None

    def switch_off(self, reason: str) -> None:
        """Use the full forward from now on, saying why."""
        self._gm = None
        self.groups = {}
        self.owners = {}
        self.opaque = ()
        self.reason = reason

    # building -------------------------------------------------------------------------------

    def _build(self, opaque: Sequence[nn.Module] = ()) -> None:
        self._gm = None
        self.groups = {}
        gm = trace(self.model, opaque)
        self._opaque_ids = {id(m) for m in opaque}
        self._modules = _pure_graph(gm)
        self.owners = fuse_conv_chains(gm, self._modules, fold=self.fold)
        self._gm = gm
        self._nodes = [n for n in gm.graph.nodes if n.op != "output"]
        self._output = next(n for n in gm.graph.nodes if n.op == "output")
        self._pos = {n: i for i, n in enumerate(self._nodes)}
        self._pos[self._output] = len(self._nodes)
        inputs = [n for n in self._nodes if _is_input(n)]
        if not inputs or any(not n.args for n in inputs[1:]):
            raise NotPartial(f"the traced model takes {len(inputs)} required inputs, expected 1")
        self._defaults = {n: n.args[0] for n in inputs[1:]}  # optional inputs keep their defaults
        for name, keys in self.group_keys.items():
            self.groups[name] = self._group(name, keys)

    def _starts(self, keys: Iterable[str]) -> set[fx.Node]:
        keys = list(keys)
        starts: set[fx.Node] = set()
        for node in self._nodes:
            if node.op == "call_module" and any(_module_owns(node.target, k) for k in keys):
                starts.add(node)
            elif node in self.owners and any(_module_owns(p, k) for p in self.owners[node] for k in keys):
                starts.add(node)
            elif node.op == "get_attr" and any(k == node.target or k.startswith(node.target + ".") for k in keys):
                starts.add(node)
        return starts

    def _group(self, name: str, keys: tuple[str, ...]) -> Group:
        affected = self._starts(keys)
        if not affected:  # reached under another name, or not at all: re-run everything to be safe
            affected = {n for n in self._nodes if not _is_input(n)}
        for node in self._nodes:  # topological order: one pass collects every descendant
            if node not in affected and any(a in affected for a in node.all_input_nodes):
                affected.add(node)
        nodes = [n for n in self._nodes if n in affected]
        frontier_set: set[fx.Node] = set()
        for node in [*nodes, self._output]:
            frontier_set.update(a for a in node.all_input_nodes if a not in affected)
        frontier = sorted(frontier_set, key=self._pos.__getitem__)
        ready = max((self._pos[n] for n in frontier), default=0)
        last_use: dict[fx.Node, int] = {}
        for i, node in enumerate(nodes):
            for a in node.all_input_nodes:
                if a in affected:
                    last_use[a] = i
        for a in self._output.all_input_nodes:
            last_use.pop(a, None)  # outputs are kept to the end
        free_at: dict[int, list[fx.Node]] = {}
        for node, last in last_use.items():
            free_at.setdefault(last, []).append(node)
        return Group(name, keys, nodes, frontier, ready, free_at)

    # running --------------------------------------------------------------------------------

    def _call(self, node: fx.Node, env: Mapping[fx.Node, Any]) -> Any:
        args = fx.node.map_arg(node.args, env.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
        op, target = node.op, node.target  # a callable for call_function, a name for the others
        if op == "call_module" and isinstance(target, str):
            module = self._modules[target]
            if id(module) in self._opaque_ids:  # its own code may change its inputs in place: give it copies
                args, kwargs = _copies(args), _copies(kwargs)
            return module(*args, **kwargs)
        if op == "call_function" and callable(target):
            return target(*args, **kwargs)
        if op == "call_method" and isinstance(target, str):
            obj, *rest = args
            return getattr(obj, target)(*rest, **kwargs)
        if op == "get_attr" and isinstance(target, str) and self._gm is not None:
            return _fetch_attr(self._gm, target)
        raise NotPartial(f"unexpected fx node {op} {target!r}")

    def _outputs(self, env: Mapping[fx.Node, Any]) -> Any:
        return fx.node.map_arg(self._output.args[0], env.__getitem__)

    def _run_group(self, group: Group, cache: Mapping[fx.Node, Any]) -> Any:
        env: dict[fx.Node, Any] = {n: cache[n] for n in group.frontier}
        for i, node in enumerate(group.nodes):
            env[node] = self._call(node, env)
            for a in group.free_at.get(i, ()):
                del env[a]
        return self._outputs(env)

    def verify(self, x: Any, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
        """Check the traced graph against the model's own forward on `x`; fall back if they differ.

        Tracing can silently fix values a forward computes in Python; one comparison on real
        input catches that. When it does (or the graph raises, or tracing failed), the modules
        whose own code traces wrongly are kept whole and the model traced again; if that does
        not agree either, the full forward is used, with the first reason. Returns whether
        partial re-execution is still on.
        """
        if not self._trace:
            return False
        reason = self.reason
        if self._gm is not None:
            try:
                if self._agrees(x, rtol, atol):
                    return True
                reason = "the traced graph disagrees with the model's forward"
            except Exception as exc:
                reason = f"the traced graph fails on real input: {describe(exc)}"
        try:
            opaque = opaque_modules(self.model, x, rtol, atol)
            if opaque:
                self._build(opaque)
                if self._agrees(x, rtol, atol):
                    names = {id(m): name for name, m in self.model.named_modules()}
                    self.opaque = tuple(names[id(m)] for m in opaque)
                    self.reason = ""
                    return True
        except Exception:  # noqa: S110 - the first failure is the reason worth reporting
            pass
        self.switch_off(reason)
        return False

    def _agrees(self, x: Any, rtol: float, atol: float) -> bool:
        traced = self.run(x, lambda name, part: None, [], to_end=True)
        return outputs_agree(traced, self.model(x), rtol, atol)

    def run(self, x: Any, visit: Visit, names: Sequence[str] | None = None, *, to_end: bool = True) -> Any:
        """One baseline pass on input `x`, calling `visit(name, downstream)` for each group.

        `names` restricts the groups visited (default: all). With `to_end` False the baseline
        stops once the last of them has been visited and None is returned; otherwise the
        baseline output is returned.
        """
        names = list(self.group_keys) if names is None else list(names)
        if self._gm is None:
            out = self.model(x) if to_end or not names else None
            for name in names:
                visit(name, Downstream(self, None, {}, x))
            return out
        groups = sorted((self.groups[n] for n in names), key=lambda g: g.ready)
        stop = len(self._nodes) - 1 if to_end or not groups else groups[-1].ready
        keep: dict[fx.Node, int] = {}  # node -> last position it is needed at
        for node in self._nodes[: stop + 1]:
            for a in node.all_input_nodes:
                keep[a] = self._pos[node]
        for group in groups:
            for a in group.frontier:
                keep[a] = max(keep.get(a, -1), group.ready)
        if to_end:
            for a in self._output.all_input_nodes:
                keep[a] = len(self._nodes)
        free_at: dict[int, list[fx.Node]] = {}
        for node, last in keep.items():
            free_at.setdefault(last, []).append(node)
        env: dict[fx.Node, Any] = {}
        g = 0
        for i, node in enumerate(self._nodes[: stop + 1]):
            if _is_input(node):
                env[node] = self._defaults.get(node, x)
            else:
                try:
                    env[node] = self._call(node, env)
                except Exception as exc:
                    raise PartialFailed(f"the traced baseline pass failed at {node.name}: {describe(exc)}") from exc
            while g < len(groups) and groups[g].ready == i:
                visit(groups[g].name, Downstream(self, groups[g], env, x))
                g += 1
            for a in free_at.get(i, ()):
                env.pop(a, None)
            if node not in keep:
                env.pop(node, None)
        return self._outputs(env) if to_end else None
