"""The layer index: a model's Conv/norm layers numbered the way the study counts them.

A layer is a convolution (Conv/ConvTranspose 1D-3D, or Linear) and the norm executed right after
it (BatchNorm, SyncBatchNorm, InstanceNorm, GroupNorm, LayerNorm). Layers are numbered 1..N in
*forward execution order*, found by running one forward pass with hooks (definition order lies:
a ResNet's downsample branch is defined before it runs, a UNet's decoder after its up-convs).
Convolutions with no norm after them (up-convolutions, the head) are listed after the numbered
layers under a name (`up1`, `head`) and can be swapped too; so are norms that follow no
unpaired convolution (a norm on the input, a norm after a norm): `norm_summary` names them.
Each layer carries the kinds its tensors give it: RM, RV where the norm keeps running
statistics, RW, RB where it is affine, W and (when the conv has a bias) B for the conv.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reuse_console.engine.models.layout import spatial_dims
from reuse_console.store.errors import UserError

KINDS: tuple[str, ...] = ("RM", "RV", "RW", "RB", "W", "B")
BN_KINDS: tuple[str, ...] = ("RM", "RV", "RW", "RB")
CONV_KINDS: tuple[str, ...] = ("W", "B")
_BN_LEAF = {"RM": "running_mean", "RV": "running_var", "RW": "weight", "RB": "bias"}
_CONV_LEAF = {"W": "weight", "B": "bias"}
_KIND_GROUPS = {"ALL": KINDS, "BN": BN_KINDS, "CONV": CONV_KINDS}
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


@dataclass(frozen=True)
class Layer:
    """One Conv(+norm) layer, or a lone norm: where its tensors live and what they look like.

    `bn` is the norm's module path, whatever norm it is (the name predates the other norms)."""

    index: int | None
    name: str
    conv: str | None
    bn: str | None
    kinds: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    numel: dict[str, int] = field(default_factory=dict, compare=False)
    norm: str | None = field(default=None, compare=False)  # the norm's class name, e.g. "InstanceNorm2d"

    @property
    def modules(self) -> list[str]:
        """Module paths of this layer, conv first."""
        return [m for m in (self.conv, self.bn) if m is not None]

    def key(self, kind: str) -> str:
        """The state-dict key holding tensor `kind` of this layer."""
        kind = kind.upper()
        if kind not in self.kinds:
            raise UserError(f"layer {self.name} has no {kind} (it has {', '.join(self.kinds)})")
        if kind in _BN_LEAF:
            return f"{self.bn}.{_BN_LEAF[kind]}"
        return f"{self.conv}.{_CONV_LEAF[kind]}"

    def keys(self, kinds: tuple[str, ...] = KINDS) -> dict[str, str]:
        """State-dict keys of those `kinds` this layer has (absent kinds are skipped)."""
        return {k: self.key(k) for k in kinds if k in self.kinds}

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "modules": self.modules,
            "kinds": list(self.kinds),
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "numel": dict(self.numel),
            "norm": self.norm,
        }


# _NormBase covers BatchNorm 1d-3d, SyncBatchNorm and InstanceNorm 1d-3d (their lazy forms too)
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def _is_conv(module: nn.Module) -> bool:
    return isinstance(module, CONV_TYPES)


def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES)


def keeps_running_stats(module: nn.Module) -> bool:
    """Whether `module` is a norm with running statistics (train mode updates them, eval mode uses them)."""
    return isinstance(module, nn.modules.batchnorm._NormBase) and getattr(module, "running_mean", None) is not None


def _dummy_shape(model: nn.Module, in_channels: int, size: int) -> tuple[int, ...]:
    """Input shape for the indexing forward: as many spatial axes as the first conv has (Linear: none)."""
    dims = spatial_dims(model)
    if dims is not None:
        return (1, in_channels, *([size] * dims))
    if any(isinstance(m, nn.Linear) for m in model.modules()):
        return (1, in_channels)
    return (1, in_channels, size, size)


def _execution_order(model: nn.Module, in_channels: int, size: int) -> list[str]:
    """Paths of conv and norm modules in the order one forward pass first runs them."""
    order: list[str] = []
    seen: set[str] = set()
    handles = []

    def hook_for(path: str):
        def hook(_module: nn.Module, _inputs: Any, _output: Any) -> None:
            if path not in seen:
                seen.add(path)
                order.append(path)

        return hook

    for path, module in model.named_modules():
        if _is_conv(module) or _is_bn(module):
            handles.append(module.register_forward_hook(hook_for(path)))
    modes = {m: m.training for m in model.modules()}
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    shape = _dummy_shape(model, in_channels, size)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    except Exception as exc:
        raise UserError(
            f"cannot index layers: a forward pass on a {'x'.join(map(str, shape))} input failed ({exc})"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return order


def _unnumbered_names(paths: list[str], taken: set[str], norms: set[str]) -> dict[str, str]:
    """Name each lone conv or norm by its module's last path part, or its path when that is ambiguous."""
    lasts = [p.rpartition(".")[2] for p in paths]
    names: dict[str, str] = {}
    for path, last in zip(paths, lasts):
        name = last if lasts.count(last) == 1 and not last.isdigit() and last not in taken else path
        if name.isdigit():
            name = f"{'norm' if path in norms else 'conv'}{name}"
        names[path] = name
    return names


@dataclass(frozen=True)
class NormSummary:
    """What `reuse-console layers` reports about norms: numbered layers per norm type, lone norms.

    Grouped by class and kinds, since one class can differ per instance (an InstanceNorm with and
    one without affine parameters)."""

    groups: dict[tuple[str, tuple[str, ...]], int]  # (norm class name, its norm kinds) -> numbered layers
    unpaired: list[tuple[str, str]]  # (module path, class name) of norms with no conv right before them

    @property
    def counts(self) -> dict[str, int]:
        """Numbered layers per norm class name, in first-seen order."""
        out: dict[str, int] = {}
        for (norm, _), count in self.groups.items():
            out[norm] = out.get(norm, 0) + count
        return out


class LayerIndex:
    """A model's layers: numbered Conv+norm layers 1..N, then lone convs and norms, in forward order."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    @property
    def numbered(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.index is not None]

    @classmethod
    def from_model(cls, model: nn.Module, in_channels: int, size: int = 64) -> LayerIndex:
        """Index `model` by one cheap forward pass (eval mode, no grad, batch 1) at `size` x `size`."""
        order = _execution_order(model, in_channels, size)
        modules = dict(model.named_modules())
        state = model.state_dict()
        pairs: list[tuple[str | None, str | None]] = []  # (conv, norm) in forward order
        for i, path in enumerate(order):
            if _is_bn(modules[path]):
                prev = order[i - 1] if i > 0 else None
                if pairs and prev is not None and pairs[-1] == (prev, None):
                    pairs[-1] = (prev, path)
                else:
                    pairs.append((None, path))
            else:
                pairs.append((path, None))
        numbered = [p for p in pairs if p[0] is not None and p[1] is not None]
        loose = [p for p in pairs if p[0] is None or p[1] is None]  # lone convs and lone norms, forward order
        paths = [conv or bn or "" for conv, bn in loose]
        taken = {str(i) for i in range(1, len(numbered) + 1)}
        names = _unnumbered_names(paths, taken, {bn for conv, bn in loose if bn is not None})
        layers = [_make_layer(i, str(i), conv, bn, modules, state) for i, (conv, bn) in enumerate(numbered, start=1)]
        layers += [_make_layer(None, names[path], conv, bn, modules, state) for path, (conv, bn) in zip(paths, loose)]
        return cls(layers)

    def norm_summary(self) -> NormSummary:
        """How many numbered layers each norm type (with which kinds) ends, and the lone norms."""
        groups: dict[tuple[str, tuple[str, ...]], int] = {}
        for layer in self.numbered:
            if layer.norm is not None:
                group = (layer.norm, tuple(k for k in layer.kinds if k in BN_KINDS))
                groups[group] = groups.get(group, 0) + 1
        unpaired = [
            (layer.bn, layer.norm or "") for layer in self.layers if layer.conv is None and layer.bn is not None
        ]
        return NormSummary(groups, unpaired)

    def get(self, ref: int | str) -> Layer:
        """A layer by number (3 or "3"), name ("head") or module path ("enc1.conv1")."""
        text = str(ref).strip()
        for layer in self.layers:
            if text in (layer.name, layer.conv, layer.bn):
                return layer
        if text.isdigit():
            raise UserError(f"no layer {text}: layers are numbered 1..{len(self.numbered)}")
        named = ", ".join(layer.name for layer in self.layers if layer.index is None)
        raise UserError(
            f"unknown layer {text!r}: use a number 1..{len(self.numbered)}"
            + (f", a name ({named})" if named else "")
            + " or a module path"
        )

    def select(self, spec: str) -> list[Layer]:
        """Layers named by `spec`: "all", "numbered", or a comma list of "3", "1-5", names, paths."""
        text = (spec or "").strip()
        if not text:
            raise UserError("empty layer selection: use e.g. all, 1-5,9 or head")
        if text.lower() == "all":
            return list(self.layers)
        if text.lower() == "numbered":
            return self.numbered
        chosen: set[int] = set()
        n = len(self.numbered)
        for part in (p.strip() for p in text.split(",")):
            if not part:
                raise UserError(f"bad layer selection {spec!r}: empty item between commas")
            match = _RANGE.match(part)
            if match:
                lo, hi = int(match.group(1)), int(match.group(2))
                if lo < 1 or hi > n or lo > hi:
                    raise UserError(f"bad layer range {part!r}: layers are numbered 1..{n}")
                chosen.update(i for i, layer in enumerate(self.layers) if layer.index and lo <= layer.index <= hi)
            else:
                chosen.add(self.layers.index(self.get(part)))
        return [self.layers[i] for i in sorted(chosen)]

    @staticmethod
    def parse_kinds(spec: str) -> tuple[str, ...]:
        """Kinds named by `spec`: "all", "bn", "conv", or a comma list such as "RM,RV" (any case)."""
        out: list[str] = []
        for part in (p.strip().upper() for p in (spec or "").split(",")):
            group = _KIND_GROUPS.get(part) or ((part,) if part in KINDS else None)
            if group is None:
                raise UserError(f"unknown kind {part!r} in {spec!r}: use all, bn, conv or {', '.join(KINDS)}")
            out.extend(k for k in group if k not in out)
        return tuple(k for k in KINDS if k in out)

    def to_json(self) -> list[dict[str, Any]]:
        return [layer.to_json() for layer in self.layers]


def _make_layer(
    index: int | None,
    name: str,
    conv: str | None,
    bn: str | None,
    modules: dict[str, nn.Module],
    state: dict[str, torch.Tensor],
) -> Layer:
    kinds: list[str] = []
    keys: dict[str, str] = {}
    if bn is not None:
        for kind, leaf in _BN_LEAF.items():
            if f"{bn}.{leaf}" in state:
                kinds.append(kind)
                keys[kind] = f"{bn}.{leaf}"
    if conv is not None:
        for kind, leaf in _CONV_LEAF.items():
            if getattr(modules[conv], leaf, None) is not None and f"{conv}.{leaf}" in state:
                kinds.append(kind)
                keys[kind] = f"{conv}.{leaf}"
    ordered = tuple(k for k in KINDS if k in kinds)
    shapes = {k: tuple(state[keys[k]].shape) for k in ordered}
    numel = {k: int(state[keys[k]].numel()) for k in ordered}
    norm = type(modules[bn]).__name__ if bn is not None else None
    return Layer(index, name, conv, bn, ordered, shapes, numel, norm)
