"""Input/output adapters for user models (MONAI, segmentation_models_pytorch, torchvision, timm, ...).

Every command runs a model as `model(x)` on a (B, 1, H, W) MRI batch (a 3D model: (B, 1, D, H, W)
blocks of slices, engine/data/volumes.py) and reads one (B, C, H, W) (or (B, C, D, H, W)) tensor back. A user model may want 3 input channels, return a dict (`{"out": ...}`), a tuple or
list of heads (deep supervision), or, like MONAI's DynUNet in train mode, the heads stacked on a
new dimension. `adapt` makes such a model fit without wrapping it in another module: it gives the
model object a subclass of its own class whose `forward` repeats the input channel and picks the
output. The object, its modules, state-dict keys and layer names stay the inner model's, so
checkpoints, swaps, RMSE, plans and fx tracing name tensors exactly as the library does.

`probe` learns the real input channels and outputs by running the model once on a zero batch of
the data set's slice size (and block depth), and refuses a model that cannot work with one line saying what to set.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import fx, nn

from reuse_console.store.errors import UserError

ADAPTER_KEY = "adapter"  # arch-config key of the adapter settings (never passed to the model's class)
INPUTS = ("as-is", "repeat")
IN_NAMES = ("in_channels", "in_chans", "input_channels", "n_channels", "num_channels")
OUT_NAMES = ("out_channels", "classes", "num_classes", "n_classes")


@dataclass(frozen=True)
class IOAdapter:
    """How the tool feeds a model and reads it: stored in the arch config under `adapter`."""

    input: str = "as-is"  # as-is | repeat (the single MRI channel repeated `channels` times)
    channels: int = 1  # input channels the model's first layer takes (the repeat count)
    output: str | None = None  # dict output: the key read (None: "out" when present)
    deep_supervision: bool = False  # train on every head (weighted), not only the main one

    @classmethod
    def from_config(cls, value: Mapping[str, Any] | None) -> IOAdapter:
        if not value:
            return cls()
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        io = cls(**known)
        io.check()
        return io

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        if self.input not in INPUTS:
            raise UserError(f"unknown --input {self.input!r}: use {' or '.join(INPUTS)}")


class Adapted(nn.Module):
    """Mixin put in front of a model's own class by `adapt`; adds no module, parameter or buffer."""

    _io: IOAdapter

    def forward(self, x: Any) -> Any:  # one input: fx traces it (no *args)
        io = self.__dict__["_io"]
        if io.input == "repeat" and io.channels != 1:
            x = x.repeat_interleave(io.channels, dim=1)  # any rank, and fx traces it (no shape unpacking)
        out = super().forward(x)
        if not self.training:  # eval (and fx tracing, in eval mode) reads the main head only
            return pick_output(out, io, training=False)
        return pick_output(out, io, training=True, rank=x.ndim)


_CLASSES: dict[type, type] = {}


def adapt(model: nn.Module, io: IOAdapter) -> nn.Module:
    """`model` itself, its class replaced by a subclass (same name) that adapts input and output."""
    io.check()
    cls = type(model)
    if not issubclass(cls, Adapted):
        if cls not in _CLASSES:
            _CLASSES[cls] = type(cls.__name__, (Adapted, cls), {"__module__": cls.__module__})
        model.__class__ = _CLASSES[cls]
    model.__dict__["_io"] = io
    return model


def adapter_of(model: nn.Module) -> IOAdapter | None:
    return model.__dict__.get("_io") if isinstance(model, Adapted) else None


def class_name(model: nn.Module) -> str:
    """The model's own class name (the library's: `Unet`, `LRASPP`, `DynUNet`)."""
    return type(model).__name__


def _is_tensor(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, fx.Proxy))


def pick_output(out: Any, io: IOAdapter, *, training: bool, rank: int = 4) -> Any:
    """The main head (a tensor); in training with deep supervision, the list of heads, main first.

    Dict: the key `io.output`, else "out". Tuple/list: the first element is the full-resolution
    head (nnU-Net, smp's (mask, label) with aux_params). A tensor with one more dimension than a
    batch of images (`rank`: 4 for slices, 5 for 3D blocks) is MONAI DynUNet's train-mode stack of
    heads (B, heads, C, ...)."""
    if isinstance(out, Mapping):
        key = io.output or "out"
        if key not in out:
            keys = ", ".join(repr(k) for k in out)
            hint = f"output key {io.output!r} is not among them" if io.output else "choose one with --output KEY"
            raise UserError(f"the model returns a dict with keys {keys}: {hint}")
        return pick_output(out[key], replace(io, output=None), training=training, rank=rank)
    if isinstance(out, (tuple, list)):
        if not out:
            raise UserError("the model returns an empty tuple: nothing to read")
        if training and io.deep_supervision:
            return [h for h in out if isinstance(h, torch.Tensor) and h.ndim == rank]
        return out[0]
    if training and isinstance(out, torch.Tensor) and out.ndim == rank + 1:
        heads = list(out.unbind(1))
        return heads if io.deep_supervision else heads[0]
    return out


# -- what the model's code accepts ---------------------------------------------------------------


def accepted_names(fn: Callable[..., Any]) -> set[str] | None:
    """Keyword names `fn` (a class or factory) accepts; None when it cannot be told."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def channel_keys(fn: Callable[..., Any]) -> tuple[str | None, str | None]:
    """The config keys of `fn` that set input channels and output classes (first library name found)."""
    names = accepted_names(fn)
    if names is None:
        return "in_channels", "out_channels"
    return next((n for n in IN_NAMES if n in names), None), next((n for n in OUT_NAMES if n in names), None)


# -- the probe ------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def first_conv(model: nn.Module, shape: tuple[int, ...]) -> nn.modules.conv._ConvNd | None:
    """The first conv the model runs on one sample of spatial `shape` (stopped there: the rest is
    not run); its `in_channels` are the model's real input channels, its kernel's rank its spatial dims."""
    seen: list[nn.modules.conv._ConvNd] = []

    def hook(module: nn.modules.conv._ConvNd, _inputs: Any) -> None:
        seen.append(module)
        raise _Stop

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *shape))
    except _Stop:
        pass
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return seen[0] if seen else None


@dataclass(frozen=True)
class Expect:
    """What the data set needs of the model, and the config keys that change it."""

    arch: str
    size: int
    classes: int
    in_key: str | None
    out_key: str | None
    depth: int | None = None  # a 3D model's block depth (None: a 2D model, slices)

    @property
    def shape(self) -> tuple[int, ...]:
        """One sample's spatial shape: (H, W), or (D, H, W) for a 3D model."""
        return (self.size, self.size) if self.depth is None else (self.depth, self.size, self.size)

    @property
    def what(self) -> str:
        return f"{'x'.join(map(str, self.shape))} {'slice' if self.depth is None else 'block'}"


def probe(model: nn.Module, io: IOAdapter, expect: Expect) -> IOAdapter:
    """Adapt `model` (in place) after learning its input channels and checking its output on a
    zero batch of the data set's slice size (block shape for a 3D model), in eval mode and in train
    mode (BN statistics and every tensor are put back). Returns the adapter to record. Refuses with
    one line."""
    name = class_name(model)
    conv = first_conv(model, expect.shape)
    if conv is not None and len(conv.kernel_size) != len(expect.shape):
        raise UserError(
            f"{expect.arch} ({name}) starts with a {len(conv.kernel_size)}D convolution "
            f"({type(conv).__name__}): models take 2D slices or 3D blocks of slices; build its 2D or 3D "
            'variant (MONAI: "spatial_dims" in --arch-config)'
        )
    channels = int(conv.in_channels) if conv is not None else None
    if channels is not None and channels != 1 and io.input != "repeat":
        key = f"set --arch-config '{json.dumps({expect.in_key: 1})}' or " if expect.in_key else ""
        raise UserError(
            f"{expect.arch} ({name}) takes {channels} input channels, the data set has 1: {key}"
            "use --input repeat (the MRI channel repeated)"
        )
    io = replace(io, channels=channels or 1) if io.input == "repeat" else io
    adapt(model, io)
    for training in (False, True):
        out = _forward(model, expect, training)
        heads = out if isinstance(out, list) else [out]
        for head in heads:
            _check_head(head, name, expect)
    return io


def _forward(model: nn.Module, expect: Expect, training: bool) -> Any:
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modes = {m: m.training for m in model.modules()}
    try:
        model.train(training)
        with torch.no_grad():
            return model(torch.zeros(2, 1, *expect.shape))
    except UserError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{expect.arch} ({class_name(model)}) fails on a 1x{expect.what} batch "
            f"({'train' if training else 'eval'} mode): {first}"
            + ("; try --depth with a multiple of 16" if expect.depth is not None else "")
        ) from exc
    finally:
        model.load_state_dict(saved)
        for m, mode in modes.items():
            m.training = mode


def _check_head(head: Any, name: str, expect: Expect) -> None:
    if not isinstance(head, torch.Tensor):
        raise UserError(f"{expect.arch} ({name}) returns {type(head).__name__}, not a tensor of class scores")
    if head.ndim != len(expect.shape) + 2:
        axes = "H, W" if expect.depth is None else "D, H, W"
        raise UserError(f"{expect.arch} ({name}) returns a {tuple(head.shape)} tensor, not (batch, classes, {axes})")
    if head.shape[1] != expect.classes:
        key = f"set --arch-config '{json.dumps({expect.out_key: expect.classes})}'" if expect.out_key else ""
        raise UserError(
            f"{expect.arch} ({name}) gives {head.shape[1]} output channels, the data set needs {expect.classes}"
            + (f": {key}" if key else "")
        )
    if tuple(head.shape[2:]) != expect.shape:
        got = "x".join(str(n) for n in head.shape[2:])
        keep = "--size" if expect.depth is None else "--size and --depth"
        hint = "" if expect.depth is None else ", e.g. multiples of 16"
        raise UserError(
            f"{expect.arch} ({name}) gives {got} outputs for {expect.what}s: "
            f"it must return full-resolution scores (or use {keep} with sizes it keeps{hint})"
        )


def main_heads(out: Any) -> Sequence[torch.Tensor]:
    """The heads a training step sees: a list (deep supervision) or the one tensor."""
    return out if isinstance(out, list) else [out]
