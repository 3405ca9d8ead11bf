"""Controls for transfer rows: what a reviewer compares a donor's tensors against.

- `reinit`: the plan's tensors keep the new model's own seeded initial values (the same seed as
  the random-init row, so `finetune` is random init itself and `freeze` fixes those tensors at
  their initial values): are they reusable, or merely unimportant?
- `meanvar` / `meanvar-channel` (Raghu et al., "Transfusion", Mean-Var init): each planned tensor
  is drawn at random with the donor tensor's mean and standard deviation, per tensor or per
  output channel: is it the donor's values that help, or only their scale? The draw is a standard
  normal made exactly mean 0 / std 1, then scaled, so the moments match the donor's exactly;
  running variances below 1e-5 (a draw can go negative) are raised to 1e-5.
- `selffer` (Yosinski et al.'s BnB/BnB+): the donor is a seg model trained on the *target* data
  with another seed; checked by the grid, the transfer itself is the usual one.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from reuse_console.store.errors import UserError

CONTROLS = ("reinit", "meanvar", "meanvar-channel", "selffer")
VAR_FLOOR = 1e-5


def check_control(control: str | None) -> str | None:
    if control is not None and control not in CONTROLS:
        raise UserError(f"unknown control {control!r}: use {', '.join(CONTROLS)}")
    return control


def needs_donor(control: str | None) -> bool:
    """Every source but `reinit` takes tensors (or their statistics) from a donor."""
    return control != "reinit"


def _standard(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A standard normal draw made exactly mean 0 and (sample) std 1 over its elements."""
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    if z.numel() < 2:
        return torch.zeros(shape, dtype=torch.float64)
    z = z - z.mean()
    return z / z.std()


def _matched(value: torch.Tensor, generator: torch.Generator, per_channel: bool) -> torch.Tensor:
    v = value.detach().to(torch.float64)
    if per_channel and v.ndim > 1:
        rows = v.reshape(v.shape[0], -1)
        z = torch.stack([_standard((rows.shape[1],), generator) for _ in range(rows.shape[0])])
        std = rows.std(dim=1, keepdim=True) if rows.shape[1] > 1 else torch.zeros_like(rows[:, :1])
        out = rows.mean(dim=1, keepdim=True) + std * z
        return out.reshape(v.shape)
    std = v.std() if v.numel() > 1 else torch.zeros(())
    return v.mean() + std * _standard(tuple(v.shape), generator)


def meanvar(state: Mapping[str, torch.Tensor], seed: int, *, per_channel: bool = False) -> dict[str, torch.Tensor]:
    """Each tensor replaced by a seeded random draw with its mean and std (per output channel)."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(state):
        value = state[key]
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        drawn = _matched(value, generator, per_channel)
        if key.endswith("running_var"):
            drawn = drawn.clamp_min(VAR_FLOOR)
        out[key] = drawn.to(value.dtype)
    return out
