"""Training checkpoints: `<run>.h5` (best epoch) and `<run>.last.h5` (last epoch, resumable).

The last checkpoint carries what resuming needs besides the weights: the optimizer's tensors as
extra group "optimizer" (keys `state.<param>.<name>`), its hyper-parameters and the step
counters in `meta.extra`. Random state is not saved: every draw of training is derived from
(seed, epoch, sample) instead (engine/data/augment.py), so there is none to restore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from reuse_console.engine.models.registry import save_model
from reuse_console.engine.training.spec import last_name
from reuse_console.store.checkpoints import CheckpointMeta, read_extra
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

# optimizer flags that describe this process's kernels, not the optimisation: never restored
_KERNEL_FLAGS = ("foreach", "fused", "capturable", "differentiable")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Split an optimizer's state dict into flat tensors and JSON-able parameter groups."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"state.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], groups: list[dict]) -> None:
    """Restore an optimizer from `optimizer_tensors` output (kernel flags stay this process's)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    current = optimizer.state_dict()["param_groups"]
    if len(current) != len(groups):
        raise UserError("the saved optimizer state does not match this model (parameter groups differ)")
    merged = []
    for saved, now in zip(groups, current):
        group = dict(saved)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        for flag in _KERNEL_FLAGS:
            if flag in now:
                group[flag] = now[flag]
        merged.append(group)
    optimizer.load_state_dict({"state": state, "param_groups": merged})


def save_epoch(
    lab: Lab,
    name: str,
    model: torch.nn.Module,
    meta: CheckpointMeta,
    *,
    optimizer: torch.optim.Optimizer,
    best: bool,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """Write `<name>.last` (with optimizer state) and, when `best`, `<name>` (weights only)."""
    tensors, groups = optimizer_tensors(optimizer)
    last_meta = CheckpointMeta(**{**meta.__dict__, "extra": {**meta.extra, "optimizer_groups": groups}})
    if best:
        save_model(lab, name, model, meta, provenance=provenance)
    save_model(lab, last_name(name), model, last_meta, provenance=provenance, extra_groups={"optimizer": tensors})


def read_optimizer(lab: Lab, run: str) -> dict[str, torch.Tensor]:
    """The optimizer tensors of a run's last checkpoint; UserError when it has none."""
    tensors = read_extra(lab.path("checkpoints", last_name(run)), "optimizer")
    if tensors is None:
        raise UserError(f"checkpoint {last_name(run)!r} has no optimizer state: it cannot be resumed")
    return tensors
