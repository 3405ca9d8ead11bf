"""Checkpoints in and out of the lab: plain state dicts as .pt or .safetensors.

Import never runs code from the file: .pt files are read with `torch.load(weights_only=True)`
(a pickle that needs anything beyond tensors and plain containers is refused) and .safetensors
holds no code at all. Every key and shape is checked against the architecture before anything
is written, and the first mismatch is named.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from reuse_console.engine.data.slices import CARDIAC_CLASSES
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import (
    build_model,
    channel_config_keys,
    checkpoint_path,
    default_config,
    model_in_channels,
    rebuild_config,
    save_model,
)
from reuse_console.engine.models.state_checks import check_finite, check_state_dict
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name

FORMATS: tuple[str, ...] = ("pt", "safetensors")
TASKS: tuple[str, ...] = ("seg", "ae")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_WRAPPERS = ("state_dict", "model", "model_state_dict")


def file_format(path: Path, fmt: str | None = None) -> str:
    """`pt` or `safetensors`, from `fmt` or else the file name."""
    if fmt:
        if fmt not in FORMATS:
            raise UserError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
        return fmt
    if path.suffix == ".safetensors":
        return "safetensors"
    if path.suffix in (".pt", ".pth", ".bin"):
        return "pt"
    raise UserError(f"cannot tell the format of {path.name}: name it .pt or .safetensors, or pass --format")


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict from .pt (weights only) or .safetensors; refuse anything else."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"file {path} not found")
    if file_format(path) == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise UserError(f"cannot read {path.name} as safetensors: {exc}") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        wanted = _GLOBAL.search(str(exc))
        if wanted is None:  # not a pickle torch can read safely at all (damaged, or not torch)
            raise UserError(
                f"cannot read {path.name} as a PyTorch state dict: it is damaged or not a torch file"
            ) from None
        raise UserError(
            f"refused {path.name}: it needs unpickling code ({wanted.group(1)}), not just tensors, and "
            "loading it could run that code; save a plain state dict (model.state_dict()) instead"
        ) from None
    except Exception as exc:
        raise UserError(f"cannot read {path.name} as a PyTorch state dict: {exc}") from exc
    return _plain_state(obj, path)


def _plain_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for wrapper in _WRAPPERS:
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise UserError(f"{path.name} holds a {type(obj).__name__}, not a state dict of tensors")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise UserError(f"{path.name} is not a plain state dict: entry {key!r} is a {type(value).__name__}")
    return dict(obj)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _infer_channels(arch: str, config: dict[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Fill in the input channels and classes the user left out (under the arch's own config keys:
    in_channels/out_channels, smp's classes...), from the file's layer 1 conv and its last conv
    (the head); the strict check that follows catches a wrong guess."""
    in_key, out_key = channel_config_keys(arch)
    if all(k is None or k in config for k in (in_key, out_key)):
        return dict(config)
    rest = {k: v for k, v in config.items() if k not in (in_key, out_key)}
    probe_config = rebuild_config(
        default_config(arch, config.get(in_key or "", 1), config.get(out_key or "", 1), **rest)
    )
    index = LayerIndex.from_model(build_model(arch, probe_config), model_in_channels(probe_config))
    convs = [layer for layer in index.layers if layer.conv is not None]
    if not convs:
        return dict(config)
    loose = [layer for layer in convs if layer.index is None]
    first, last = convs[0].key("W"), (loose[-1] if loose else convs[-1]).key("W")
    filled = dict(config)
    if in_key and in_key not in filled and first in state and state[first].ndim > 1:
        filled[in_key] = int(state[first].shape[1])
    if out_key and out_key not in filled and last in state:
        filled[out_key] = int(state[last].shape[0])
    return filled


def import_checkpoint(
    lab: Lab,
    file: Path,
    *,
    arch: str,
    task: str,
    name: str,
    arch_config: dict[str, Any] | None = None,
    data: str = "",
    classes: list[str] | None = None,
) -> tuple[Path, CheckpointMeta]:
    """Check a foreign state dict against `arch` and store it as checkpoint `name` in the lab.

    in_channels/out_channels default to what the file's first and last conv say; classes default
    to the cardiac classes for 4 outputs, else class0..classC-1.
    """
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}: use {' or '.join(TASKS)}")
    check_name(name)
    with lab.claim("checkpoints", name, new=True) as target:
        return _import_into(
            lab,
            target,
            Path(file).expanduser(),
            arch=arch,
            task=task,
            arch_config=arch_config,
            data=data,
            classes=classes,
        )


def _import_into(
    lab: Lab,
    target: Path,
    file: Path,
    *,
    arch: str,
    task: str,
    arch_config: dict[str, Any] | None,
    data: str,
    classes: list[str] | None,
) -> tuple[Path, CheckpointMeta]:
    """The import itself, under the name's claim."""
    state = read_state_file(file)
    config = _infer_channels(arch, dict(arch_config or {}), state)
    in_key, out_key = channel_config_keys(arch)
    config = default_config(arch, config.pop(in_key or "", 1), config.pop(out_key or "", 4), **config)
    if out_key is None and not classes:
        raise UserError(f"{arch} takes no config key for its number of classes: name them with --classes")
    out_channels = int(config[out_key]) if out_key else len(classes or [])
    if classes:
        if len(classes) != out_channels:
            raise UserError(f"--classes names {len(classes)} classes but the model has {out_channels} outputs")
    else:
        cardiac = out_channels == len(CARDIAC_CLASSES)
        classes = list(CARDIAC_CLASSES) if cardiac else [f"class{i}" for i in range(out_channels)]
    config = rebuild_config(config)  # the tensors come from the file
    model = build_model(arch, config)
    check_state_dict(model.state_dict(), state, file.name, arch)
    check_finite(state, str(file))
    model.load_state_dict(state, strict=False)
    digest = _sha256(file)
    meta = CheckpointMeta(
        arch=arch,
        arch_config=config,
        task=task,
        data=data,
        classes=list(classes),
        extra={"imported_from": str(file), "sha256": digest},
    )
    save_model(lab, target.stem, model, meta, provenance={"imported_from": str(file.resolve()), "sha256": digest})
    return target, meta


def export_checkpoint(lab: Lab, ref: str, out: Path, fmt: str | None = None, *, overwrite: bool = False) -> Path:
    """Write a lab checkpoint's state dict to `out` as .pt (plain dict) or .safetensors (with
    arch, arch_config and task in its metadata). Written to a temporary name, then renamed."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name such as {out / (ref + '.pt')}")
    fmt = file_format(out, fmt)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (pass --force to replace it)")
    state, meta = read_checkpoint(checkpoint_path(lab, ref))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    try:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            config = json.dumps(meta.arch_config, sort_keys=True)
            metadata = {"arch": meta.arch, "arch_config": config, "task": meta.task}
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        else:
            torch.save(state, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
