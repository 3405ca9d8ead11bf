"""Architecture name + JSON config -> model, and models in and out of the lab.

A checkpoint stores only `arch` and `arch_config`; `build_model` rebuilds the network from those
alone, so every checkpoint can be reopened by any command. Besides the built-in `unet` and
`pspnet`, `arch` may name any CNN class or factory function as "package.module:Name" (importable
from the current directory or the Python path); its config is passed to it as keyword arguments,
except `adapter` (engine/models/adapters.py), which says how a user model is fed and read: every
user model is built adapted, so every command runs it the same way.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reuse_console.engine.core.device import pick_device
from reuse_console.engine.models.adapters import ADAPTER_KEY, IN_NAMES, IOAdapter, adapt, channel_keys
from reuse_console.engine.models.pspnet import PSPNet
from reuse_console.engine.models.state_checks import check_finite, check_state_dict
from reuse_console.engine.models.unet import UNet
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint, write_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

BUILTIN: dict[str, type[nn.Module]] = {"unet": UNet, "pspnet": PSPNet}
DEFAULTS: dict[str, dict[str, Any]] = {
    "unet": {"base_width": 32, "conv_bias": True},
    "pspnet": {"width": 1.0, "conv_bias": True, "dropout": 0.1, "backbone_weights": None},
}
ARCH_HELP = (
    "unet | pspnet | package.module:ClassName or package.module:factory_function (a user CNN with Conv/BN "
    "layers; its --arch-config JSON is passed as keyword arguments, plus the input channels and classes "
    "under the names it takes: in_channels, classes, num_classes, out_channels...)"
)


def is_user_arch(arch: str) -> bool:
    return ":" in arch


def _check_arch(arch: str) -> None:
    if arch not in BUILTIN and not is_user_arch(arch):
        raise UserError(f"unknown architecture {arch!r}: use {' | '.join(BUILTIN)} or package.module:ClassName")


def default_config(arch: str, in_channels: int, out_channels: int, /, **overrides: Any) -> dict[str, Any]:
    """The full config of `arch`: its defaults, the channel counts, then `overrides` (which win).

    A user model gets the channel counts under the names its class or factory takes (smp's
    `classes`, torchvision's `num_classes`, MONAI's `out_channels`), and only when `overrides` set
    none of those names; a model that takes none is left to its own defaults (the probe checks)."""
    _check_arch(arch)
    defaults = DEFAULTS.get(arch, {})
    config: dict[str, Any] = dict(defaults)
    if arch in BUILTIN:
        unknown = sorted(set(overrides) - set(defaults) - {"in_channels", "out_channels", ADAPTER_KEY})
        if unknown:
            raise UserError(
                f"{arch} has no config key {unknown[0]!r}: it takes {', '.join(sorted(defaults))}, "
                "in_channels, out_channels"
            )
    in_key, out_key = channel_config_keys(arch)
    if in_key and not any(k in overrides for k in IN_NAMES):
        config[in_key] = int(in_channels)
    if out_key and out_key not in overrides:
        config[out_key] = int(out_channels)
    config.update(overrides)
    try:
        json.dumps(config)
    except TypeError as exc:
        raise UserError(f"arch config must be plain JSON values: {exc}") from exc
    return config


def channel_config_keys(arch: str) -> tuple[str | None, str | None]:
    """The config keys that set `arch`'s input channels and output classes (None: it takes none)."""
    if arch in BUILTIN:
        return "in_channels", "out_channels"
    return channel_keys(user_callable(arch))


def parse_arch_config(text: str | None) -> dict[str, Any]:
    """`--arch-config`: a JSON object, or @FILE holding one; empty means no overrides."""
    if not text:
        return {}
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise UserError(f"--arch-config file {path} not found")
        text = path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--arch-config is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from exc
    if not isinstance(value, dict):
        raise UserError(f"--arch-config must be a JSON object like '{{\"base_width\": 16}}', got {text!r}")
    return value


def user_callable(arch: str) -> Callable[..., Any]:
    """The class or factory function `pkg.mod:Name` names (imported: runs the module's code)."""
    module_name, _, class_name = arch.partition(":")
    if not module_name or not class_name:
        raise UserError(f"user architecture {arch!r} must look like package.module:ClassName or :function")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import module {module_name!r} for --arch {arch}: {exc}") from exc
    cls: object = module  # the attribute path may name anything: checked below
    for part in class_name.split("."):
        cls = getattr(cls, part, None)
        if cls is None:
            raise UserError(f"module {module_name!r} has no {class_name!r} (for --arch {arch})")
    if isinstance(cls, type) and issubclass(cls, nn.Module):
        return cls
    if inspect.isfunction(cls) or inspect.isbuiltin(cls) or isinstance(cls, functools.partial):
        return cls
    raise UserError(f"{arch} is not a torch.nn.Module class nor a function returning one")


TRUST_ENV = "REUSE_TRUST_ARCH"


def build_model(arch: str, config: dict[str, Any], *, trusted: bool = True) -> nn.Module:
    """A fresh model of `arch` built from `config` alone (e.g. a checkpoint's `arch_config`).

    A user architecture `pkg.mod:Class` is imported, which runs its code: that is what the user
    asks for with `--arch`. An arch read from a lab file (`trusted=False`) is only imported when
    its module is already loaded or is listed in $REUSE_TRUST_ARCH, so a file someone hands over
    cannot make the console import a module of its choosing.
    """
    _check_arch(arch)
    if arch not in BUILTIN and not trusted:
        _check_trusted(arch)
    make: Callable[..., Any] = BUILTIN.get(arch) or user_callable(arch)
    kwargs = {k: v for k, v in config.items() if k != ADAPTER_KEY}
    try:
        model = make(**kwargs)
    except TypeError as exc:
        raise UserError(f"cannot build {arch} from config {json.dumps(config, sort_keys=True)}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
    if arch in BUILTIN and ADAPTER_KEY not in config:
        return model
    return adapt(model, IOAdapter.from_config(config.get(ADAPTER_KEY)))


# Libraries of model classes whose modules a lab file may name without $REUSE_TRUST_ARCH: importing
# them runs only their own code, and only their nn.Module classes (or torchvision's public model
# factories) are ever called.
MODEL_LIBRARIES = ("torchvision", "monai", "segmentation_models_pytorch", "timm")
FACTORY_MODULES = ("torchvision.models",)


def _check_trusted(arch: str) -> None:
    """Refuse an arch read from a lab file unless building it can only build a model.

    Allowed without asking: an nn.Module class from a module already loaded or from a model
    library (MODEL_LIBRARIES), and torchvision's public model factories. Anything else (another
    module, any other function: `os:system` or `subprocess:run` with the file's config as keyword
    arguments would run a command) only when the user lists it in $REUSE_TRUST_ARCH.
    """
    module = arch.partition(":")[0]
    listed = {a.strip() for a in os.environ.get(TRUST_ENV, "").split(",") if a.strip()}
    if arch in listed or module in listed:
        return
    refusal = UserError(
        f"the model was built by user code {arch!r}; importing it runs that code, so it is only imported "
        f"when you list it: {TRUST_ENV}={arch}"
    )
    if module not in sys.modules and module.split(".")[0] not in MODEL_LIBRARIES:
        raise refusal
    target = user_callable(arch)
    if isinstance(target, type) and issubclass(target, nn.Module):
        return
    name = arch.partition(":")[2]
    public = not any(part.startswith("_") for part in [*module.split("."), *name.split(".")])
    factory = inspect.isfunction(target) and public and str(target.__module__).startswith(FACTORY_MODULES)
    if not factory:
        raise refusal


def model_in_channels(config: dict[str, Any]) -> int:
    """Input channels a config's (adapted) model is fed (1 when a user model's config does not say;
    1 when its adapter repeats the MRI channel)."""
    if IOAdapter.from_config(config.get(ADAPTER_KEY)).input == "repeat":
        return 1
    return int(next((config[k] for k in IN_NAMES if k in config), 1))


def checkpoint_path(lab: Lab, ref: str) -> Path:
    """A checkpoint id in the lab (`name` or `checkpoints/name`), or a path to a checkpoint file."""
    path = Path(ref).expanduser()
    if ref.endswith(".h5") and path.is_file():
        return path
    if ref.startswith("checkpoints/"):
        ref = ref.partition("/")[2]
    return lab.resolve(ref, "checkpoints").path


def save_model(
    lab: Lab,
    name: str,
    model: nn.Module,
    meta: CheckpointMeta,
    *,
    provenance: Mapping[str, Any] | None = None,
    extra_groups: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write `model`'s tensors and `meta` to `checkpoints/<name>.h5` (atomically; replaces it)."""
    _check_arch(meta.arch)
    path = lab.path("checkpoints", name)
    return write_checkpoint(path, model.state_dict(), meta, provenance=provenance, extra_groups=extra_groups)


def rebuild_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config to rebuild a *saved* model: its tensors come from the file, not backbone weights."""
    return {k: v for k, v in config.items() if k != "backbone_weights"}


def load_model(lab: Lab, ref: str, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild a checkpoint's model from its arch and config, load its tensors, eval mode."""
    path = checkpoint_path(lab, ref)
    state, meta = read_checkpoint(path)
    model = build_model(meta.arch, rebuild_config(meta.arch_config), trusted=False)
    check_state_dict(model.state_dict(), state, f"checkpoint {path.name}", meta.arch)
    check_finite(state, f"checkpoint {ref!r}")
    model.load_state_dict(state, strict=False)
    target = device if isinstance(device, torch.device) else pick_device(device)
    return model.to(target).eval(), meta
