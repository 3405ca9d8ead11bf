"""Architecture name + JSON config -> model, and models in and out of the lab.

A checkpoint stores only `arch` and `arch_config`; `build_model` rebuilds the network from those
alone, so every checkpoint can be reopened by any command. Besides the built-in `unet` and
`pspnet`, `arch` may name any CNN class as "package.module:ClassName" (importable from the
current directory or the Python path); its config is passed to the class as keyword arguments.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reuse_console.engine.core.device import pick_device
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
    "unet | pspnet | package.module:ClassName (a user CNN with Conv/BN layers; its --arch-config "
    "JSON is passed to the class as keyword arguments, plus in_channels and out_channels)"
)


def is_user_arch(arch: str) -> bool:
    return ":" in arch


def _check_arch(arch: str) -> None:
    if arch not in BUILTIN and not is_user_arch(arch):
        raise UserError(f"unknown architecture {arch!r}: use {' | '.join(BUILTIN)} or package.module:ClassName")


def default_config(arch: str, in_channels: int, out_channels: int, **overrides: Any) -> dict[str, Any]:
    """The full config of `arch`: its defaults, the channel counts, then `overrides`."""
    _check_arch(arch)
    defaults = DEFAULTS.get(arch, {})
    if arch in BUILTIN:
        unknown = sorted(set(overrides) - set(defaults) - {"in_channels", "out_channels"})
        if unknown:
            raise UserError(
                f"{arch} has no config key {unknown[0]!r}: it takes {', '.join(sorted(defaults))}, "
                "in_channels, out_channels"
            )
    config: dict[str, Any] = {"in_channels": int(in_channels), "out_channels": int(out_channels), **defaults}
    config.update(overrides)
    try:
        json.dumps(config)
    except TypeError as exc:
        raise UserError(f"arch config must be plain JSON values: {exc}") from exc
    return config


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


def _user_class(arch: str) -> type[nn.Module]:
    module_name, _, class_name = arch.partition(":")
    if not module_name or not class_name:
        raise UserError(f"user architecture {arch!r} must look like package.module:ClassName")
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
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UserError(f"{arch} is not a torch.nn.Module class")
    return cls


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
    cls = BUILTIN.get(arch) or _user_class(arch)
    try:
        return cls(**config)
    except TypeError as exc:
        raise UserError(f"cannot build {arch} from config {json.dumps(config, sort_keys=True)}: {exc}") from exc


def _check_trusted(arch: str) -> None:
    module = arch.partition(":")[0]
    listed = {a.strip() for a in os.environ.get(TRUST_ENV, "").split(",") if a.strip()}
    if module in sys.modules or arch in listed or module in listed:
        return
    raise UserError(
        f"the model was built by user code {arch!r}; importing it runs that code, so it is only imported "
        f"when you list it: {TRUST_ENV}={arch}"
    )


def model_in_channels(config: dict[str, Any]) -> int:
    """Input channels a config's model expects (1 when a user model's config does not say)."""
    return int(config.get("in_channels", 1))


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
