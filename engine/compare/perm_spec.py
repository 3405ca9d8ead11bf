"""Permutation groups of a model, found from its torch.fx graph (which channels may be reordered together).

Reordering the output channels of a conv, and in the same way the norm after it and the input
channels of every consumer, leaves the model's function unchanged. Such a set of channels is a
*group*; alignment chooses one permutation per group. The groups are read off the traced graph
by following a *layout* along each tensor's channel axis (dim 1): a list of segments, each the
channels of one group (or of no group: never permuted). A conv makes a new group for its output;
a norm, an activation, pooling or resampling passes the layout on; a residual add joins the
groups of its operands into one; `torch.cat` on dim 1 concatenates layouts, so a consumer's input
channels split into the parts of each source. Graph inputs and everything that reaches the
output (the head's channels) are never permuted. Transposed convs keep their weight as
(in, out, ...), a depthwise conv passes its input's layout through, and other grouped convs are
left unpermuted. GroupNorm keeps its channel blocks together (`PermGroup.blocks`).

An operation this module does not know, on channels that could be permuted, stops the analysis
with one UserError line naming the node.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from reuse_console.engine.compare.perm_rules import channel_rule
from reuse_console.engine.compare.record import record
from reuse_console.engine.swaps.trace import outputs_agree, trace
from reuse_console.store.errors import UserError

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
Layout = tuple[tuple[int | None, int], ...]  # (group id or None, channels) along dim 1


@dataclass(frozen=True)
class Segment:
    """Channels start..start+size of one tensor axis, permuted by `group` (None: never)."""

    group: str | None
    start: int
    size: int


@dataclass
class PermGroup:
    """One permutation: its channels, and the channel blocks a GroupNorm keeps together."""

    name: str
    size: int
    blocks: int = 1


@dataclass
class PermSpec:
    """Every group, and for each state-dict tensor the axes its groups permute."""

    groups: dict[str, PermGroup]
    axes: dict[str, dict[int, tuple[Segment, ...]]]  # state key -> axis -> segments covering it
    taps: dict[str, str] = field(default_factory=dict)  # group -> node whose output activation matching reads
    aliases: dict[str, str] = field(default_factory=dict)  # state key -> the key of the same tensor the graph uses

    def occurrences(self, group: str) -> Iterator[tuple[str, int, Segment]]:
        """(key, axis, segment) for every place group `group` permutes."""
        for key, axes in self.axes.items():
            for axis, segments in axes.items():
                for seg in segments:
                    if seg.group == group:
                        yield key, axis, seg


class _Groups:
    """Union-find over group ids, with a 'never permuted' flag and GroupNorm blocks per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.names: list[str] = []
        self.sizes: list[int] = []
        self.fixed: set[int] = set()
        self.blocks: dict[int, int] = {}

    def new(self, name: str, size: int) -> int:
        self.parent.append(len(self.parent))
        self.names.append(name)
        self.sizes.append(size)
        return len(self.parent) - 1

    def root(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int | None, b: int | None) -> None:
        if a is None or b is None:
            self.fix(b if a is None else a)
            return
        ra, rb = sorted((self.root(a), self.root(b)))
        if ra == rb:
            return
        self.parent[rb] = ra
        if rb in self.fixed:
            self.fixed.add(ra)
        self.set_blocks(ra, self.blocks.pop(rb, 1))

    def fix(self, g: int | None) -> None:
        if g is not None:
            self.fixed.add(self.root(g))

    def set_blocks(self, g: int, blocks: int) -> None:
        r = self.root(g)
        old = self.blocks.get(r, 1)
        if blocks == 1 or old == blocks:
            return
        if old != 1:  # two different GroupNorm blockings of one group: keep it as it is
            self.fixed.add(r)
        self.blocks[r] = blocks


class _Analysis:
    """One walk over the traced graph, running it on a real input to know every tensor's channels."""

    def __init__(self, gm: fx.GraphModule, state_keys: set[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.state_keys = state_keys
        self.groups = _Groups()
        self.layouts: dict[fx.Node, Any] = {}
        self.values: dict[fx.Node, Any] = {}  # each node's output on the example input
        self.axes: dict[str, dict[int, Layout]] = {}
        self.node: fx.Node | None = None

    # -- layouts ---------------------------------------------------------------------------
    def fixed(self, channels: int) -> Layout:
        return ((None, channels),)

    def fresh(self, name: str, channels: int) -> Layout:
        return ((self.groups.new(name, channels), channels),)

    def fix(self, layout: Any) -> None:
        for lay in _flat_layouts(layout):
            for g, _ in lay:
                self.groups.fix(g)

    def join(self, a: Layout, b: Layout) -> Layout:
        """Channels that must share one permutation (operands of an add, two uses of one tensor)."""
        if sum(n for _, n in a) != sum(n for _, n in b):
            self.stop(f"joins {sum(n for _, n in a)} channels with {sum(n for _, n in b)}")
        if [n for _, n in a] == [n for _, n in b]:
            for (ga, _), (gb, _) in zip(a, b):
                self.groups.union(ga, gb)
            return a
        self.fix(a)
        self.fix(b)
        return a

    def assign(self, key: str, axis: int, layout: Layout) -> None:
        """Tensor `key`'s axis `axis` follows `layout` (joined with an earlier call of the module)."""
        if key not in self.state_keys:
            return
        axes = self.axes.setdefault(key, {})
        axes[axis] = self.join(axes[axis], layout) if axis in axes else layout

    def stop(self, what: str) -> None:
        node = self.node
        where = f"node {node.name} ({_describe(node)})" if node is not None else "the graph"
        raise UserError(f"cannot find permutation groups: {where} {what}")

    # -- the walk ----------------------------------------------------------------------------
    def run(self, x: Any) -> None:
        env = self.values
        for node in self.gm.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                value = x
            elif node.op == "output":
                self.fix(fx.node.map_arg(node.args, lambda n: self.layouts.get(n)))
                return
            else:
                args = fx.node.map_arg(node.args, lambda n: env[n])
                kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
                value = self.call(node, args, kwargs)
            env[node] = value
            self.layouts[node] = self.layout(node, value)

    def call(self, node: fx.Node, args: Any, kwargs: Any) -> Any:
        if node.op == "get_attr":
            return _fetch(self.gm, str(node.target))
        if node.op == "call_module":
            return self.modules[str(node.target)](*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        target: Callable[..., Any] = node.target  # type: ignore[assignment]
        return target(*args, **kwargs)

    def layout(self, node: fx.Node, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            inputs = _input_layouts(node, self.layouts)
            if isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value):
                if all(_all_fixed(lay) for lay in inputs) and node.op != "call_module":
                    return [self.fixed(_channels(v)) if isinstance(v, torch.Tensor) else None for v in value]
                if node.op == "call_function" and node.target is operator.getitem:
                    return None
                self.stop("returns several tensors from channels that could be permuted")
            return None
        if node.op == "placeholder":
            return self.fixed(_channels(value))
        if node.op == "get_attr":
            if str(node.target) in self.state_keys:
                self.stop(f"reads tensor {node.target} outside its module (get_attr)")
            return self.fixed(_channels(value))
        return channel_rule(self, node, value)


def _channels(value: torch.Tensor) -> int:
    return int(value.shape[1]) if value.ndim >= 2 else 1


def _all_fixed(layout: Any) -> bool:
    return all(g is None for lay in _flat_layouts(layout) for g, _ in lay)


def _flat_layouts(layout: Any) -> Iterator[Layout]:
    if isinstance(layout, list):
        for item in layout:
            yield from _flat_layouts(item)
    elif isinstance(layout, tuple) and layout and isinstance(layout[0], tuple) and not isinstance(layout[0][0], tuple):
        yield layout
    elif isinstance(layout, tuple):
        for item in layout:
            yield from _flat_layouts(item)


def _input_layouts(node: fx.Node, layouts: dict[fx.Node, Any]) -> list[Any]:
    out: list[Any] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: out.append(layouts.get(n)))
    return [lay for lay in out if lay is not None]


def _describe(node: fx.Node) -> str:
    target = node.target
    name = getattr(target, "__name__", None) or str(target)
    return f"{node.op} {name}"


def _fetch(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def traced(model: nn.Module, x: Any) -> fx.GraphModule:
    """The model's fx graph: the plain trace when it computes what the model does, else the graph
    recorded from its real forward on `x` (compare/record.py: MONAI's UpCat branches on its inputs)."""
    try:
        expected = model(x)
    except Exception as exc:
        raise UserError(f"cannot find permutation groups: the model does not run on its input ({exc})") from exc
    try:
        gm = trace(model)
        if outputs_agree(gm(x), expected, rtol=1e-4, atol=1e-5):
            return gm
    except Exception:  # noqa: S110 - recording below follows the forward as it runs
        pass
    try:
        gm = record(model, x)
        same = outputs_agree(gm(x), expected, rtol=1e-4, atol=1e-5)
    except Exception as exc:
        raise UserError(
            f"cannot find permutation groups: {type(model).__name__}'s forward neither traces with torch.fx "
            f"nor replays from a recording ({exc})"
        ) from exc
    if not same:
        raise UserError(
            f"cannot find permutation groups: {type(model).__name__}'s forward neither traces with torch.fx "
            "nor replays from a recording (it changes its own state while it runs?)"
        )
    return gm


def permutation_spec(model: nn.Module, x: Any) -> PermSpec:
    """The permutation groups of `model` (eval mode) on example input `x` (one batch it takes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            gm = traced(model, x)
            analysis = _Analysis(gm, set(model.state_dict()))
            analysis.run(x)
    finally:
        model.train(was_training)
    spec = _finish(analysis)
    spec.aliases = _aliases(model, spec)
    return spec


def _aliases(model: nn.Module, spec: PermSpec) -> dict[str, str]:
    """State keys naming a permuted tensor under a second module path (MONAI DynUNet's
    `skip_layers`): they must be permuted with it, or loading the state dict would undo it."""
    keys_of: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        keys_of.setdefault(id(tensor), []).append(key)
    out: dict[str, str] = {}
    for keys in keys_of.values():
        used = [k for k in keys if k in spec.axes]
        for key in keys:
            if used and key not in spec.axes:
                out[key] = used[0]
    return out


def _finish(analysis: _Analysis) -> PermSpec:
    """Resolve the union-find into named groups and per-tensor segments."""
    g = analysis.groups
    names: dict[int, str] = {}
    groups: dict[str, PermGroup] = {}
    for gid in range(len(g.parent)):
        r = g.root(gid)
        if r in g.fixed or r in names:
            continue
        names[r] = g.names[r]
        groups[g.names[r]] = PermGroup(g.names[r], g.sizes[r], g.blocks.get(r, 1))

    def segments(layout: Layout) -> tuple[Segment, ...]:
        out, start = [], 0
        for gid, n in layout:
            out.append(Segment(None if gid is None else names.get(g.root(gid)), start, n))
            start += n
        return tuple(out)

    axes: dict[str, dict[int, tuple[Segment, ...]]] = {}
    for key, by_axis in analysis.axes.items():
        for axis, lay in by_axis.items():
            segs = segments(lay)
            if any(s.group is not None for s in segs):
                axes.setdefault(key, {})[axis] = segs
    taps: dict[str, str] = {}
    for node, layout in analysis.layouts.items():  # graph order: the conv's output, or the last norm's
        if isinstance(layout, tuple) and len(layout) == 1 and layout[0][0] is not None:
            name = names.get(g.root(layout[0][0]))
            if name is not None and (name not in taps or _is_norm(node, analysis.modules)):
                taps[name] = node.name
    return PermSpec(groups, axes, taps)


def _is_norm(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Activation matching reads a group's channels at a norm's output (before the activation: a
    channel a ReLU zeroes everywhere would tie with every other dead one)."""
    return node.op == "call_module" and isinstance(modules[str(node.target)], NORMS)
