"""Checkpoint files: a model's tensors plus what is needed to rebuild and judge it.

Layout: `/params/<module.path>/<name>` one dataset per tensor (see tensors.py); root attributes
`arch`, `arch_config` (JSON), `task`, `data`, `classes` (JSON), `epoch`, `metrics` (JSON),
`run`, `seed`; optional extra groups (`/extra/<group>/...`, e.g. optimizer state for resume)
and `extra` (JSON). Written atomically; never modified in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .h5 import atomic_h5, attr_str, get_json, open_h5, set_json, stamp
from .tensors import read_state_dict, write_state_dict

KIND = "checkpoint"


@dataclass
class CheckpointMeta:
    """Everything about a checkpoint except its tensors."""

    arch: str
    arch_config: dict[str, Any]
    task: str
    data: str = ""
    classes: list[str] = field(default_factory=list)
    epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    run: str = ""
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The few fields a listing shows."""
        out: dict[str, Any] = {"arch": self.arch, "task": self.task, "data": self.data, "epoch": self.epoch}
        for key in ("dice_fg", "psnr", "mse"):
            if key in self.metrics:
                value = self.metrics[key]
                out[key] = round(value, 4) if isinstance(value, float) else value
        return out


def write_checkpoint(
    path: Path,
    state: Mapping[str, torch.Tensor],
    meta: CheckpointMeta,
    *,
    provenance: Mapping[str, Any] | None = None,
    extra_groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint atomically to `path` (which must not be a half-written file)."""
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        for key in ("arch", "task", "data", "run"):
            f.attrs[key] = getattr(meta, key)
        f.attrs["epoch"] = int(meta.epoch)
        f.attrs["seed"] = int(meta.seed)
        set_json(f, "arch_config", meta.arch_config)
        set_json(f, "classes", meta.classes)
        set_json(f, "metrics", meta.metrics)
        set_json(f, "extra", meta.extra)
        set_json(f, "summary", meta.summary())
        write_state_dict(f.create_group("params"), state)
        for name, tensors in (extra_groups or {}).items():
            write_state_dict(f.require_group("extra").create_group(name), tensors)
    return path


def _meta(f: Any, path: Path) -> CheckpointMeta:
    if attr_str(f, "kind") != KIND:
        raise UserError(f"{path} is not a checkpoint (kind {attr_str(f, 'kind') or 'missing'!r})")
    return CheckpointMeta(
        arch=attr_str(f, "arch"),
        arch_config=get_json(f, "arch_config", {}),
        task=attr_str(f, "task"),
        data=attr_str(f, "data"),
        classes=get_json(f, "classes", []),
        epoch=int(f.attrs.get("epoch", 0)),
        metrics=get_json(f, "metrics", {}),
        run=attr_str(f, "run"),
        seed=int(f.attrs.get("seed", 0)),
        extra=get_json(f, "extra", {}),
    )


def read_meta(path: Path) -> CheckpointMeta:
    """Read a checkpoint's metadata without its tensors."""
    with open_h5(path) as f:
        return _meta(f, path)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a checkpoint's state dict and metadata."""
    with open_h5(path) as f:
        meta = _meta(f, path)
        return read_state_dict(f["params"]), meta


def read_extra(path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """Read one extra tensor group (e.g. `optimizer`), or None when the file has none."""
    with open_h5(path) as f:
        if "extra" not in f or name not in f["extra"]:
            return None
        return read_state_dict(f["extra"][name])


def meta_dict(meta: CheckpointMeta) -> dict[str, Any]:
    """Metadata as plain JSON-able data (for `--json` output)."""
    return asdict(meta)
