"""Checks a state dict must pass before a model takes it: keys and shapes, finite values.

Kept apart from checkpoint import/export (ckpt_io) because every loader needs them: the registry's
`load_model`, donors of swaps, scans, RMSE, BN views and transfer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from reuse_console.store.errors import UserError

_OPTIONAL = ("num_batches_tracked",)  # BN step counters: unused in eval, often missing in exports


def check_state_dict(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str, arch: str
) -> None:
    """Raise a UserError naming the first key (in model order) that is missing or has the wrong shape,
    or else the first unexpected key."""
    problems: list[str] = []
    for key, tensor in expected.items():
        if key not in got:
            if not key.endswith(_OPTIONAL):
                problems.append(f"missing key {key!r} (shape {tuple(tensor.shape)})")
        elif tuple(got[key].shape) != tuple(tensor.shape):
            problems.append(f"{key} has shape {tuple(got[key].shape)}, {arch} needs {tuple(tensor.shape)}")
    problems += [f"unexpected key {key!r}" for key in got if key not in expected]
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise UserError(f"{source} does not fit {arch}: {problems[0]}{more}")


def check_finite(state: Mapping[str, torch.Tensor], source: str, *, keys: Iterable[str] | None = None) -> None:
    """Refuse a state dict with NaN or Inf in a floating-point tensor, naming the first such tensor:
    a swap, scan, RMSE or training from it would give NaN results that look like findings."""
    for key in state if keys is None else keys:
        tensor = state[key]
        if not (tensor.is_floating_point() or tensor.is_complex()) or bool(torch.isfinite(tensor).all()):
            continue
        what = "NaN" if bool(torch.isnan(tensor).any()) else "Inf"
        raise UserError(
            f"{source} holds {what} in tensor {key}: it cannot be used (retrain it, or import finite weights)"
        )
