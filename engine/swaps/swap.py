"""Swaps: replace tensors of a recipient model with a donor's, in place, and put them back exactly.

A swap names (layer, kind) pairs of the recipient and an interpolation factor alpha: each named
tensor becomes (1 - alpha) * recipient + alpha * donor (alpha 1 is the paper's swap, 0 changes
nothing). The model is changed in place with `tensor.copy_` and restored from a saved copy of
just the changed tensors, so nothing is deep-copied and a restore is bit-exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reuse_console.engine.models.layers import LayerIndex
from reuse_console.store.errors import UserError

_COUNTERS = ("num_batches_tracked",)  # BN step counters: not a kind, unused in eval, often not exported


@dataclass(frozen=True)
class SwapSpec:
    """Which recipient tensors take the donor's values: (layer name, kind) pairs and alpha."""

    recipient: str
    donor: str
    targets: tuple[tuple[str, str], ...]  # (layer name, kind), in layer-index then kind order
    alpha: float = 1.0

    @classmethod
    def parse(
        cls, recipient: str, donor: str, index: LayerIndex, layers: str, kinds: str, alpha: float = 1.0
    ) -> SwapSpec:
        """A spec from CLI-style selections such as layers "1-5,head" and kinds "RM,RV"."""
        chosen = index.select(layers)
        wanted = LayerIndex.parse_kinds(kinds)
        targets = tuple((layer.name, k) for layer in chosen for k in wanted if k in layer.kinds)
        if not targets:
            raise UserError(f"layers {layers!r} have none of the kinds {','.join(wanted)}: nothing to swap")
        return cls(recipient, donor, targets, check_alpha(alpha))

    def keys(self, index: LayerIndex) -> list[str]:
        """State-dict keys of the targets."""
        return [index.get(name).key(kind) for name, kind in self.targets]

    def describe(self) -> dict[str, Any]:
        """JSON-able description: layers and kinds as lists, alpha."""
        layers = list(dict.fromkeys(name for name, _ in self.targets))
        kinds = list(dict.fromkeys(kind for _, kind in self.targets))
        return {
            "recipient": self.recipient,
            "donor": self.donor,
            "layers": layers,
            "kinds": kinds,
            "targets": [list(t) for t in self.targets],
            "alpha": self.alpha,
        }


def check_alpha(alpha: float) -> float:
    """Alpha must be a finite number in [0, 1] (0: recipient, 1: donor)."""
    value = float(alpha)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UserError(f"alpha {alpha!r} is outside [0, 1] (0 keeps the recipient, 1 takes the donor)")
    return value


def parse_alphas(spec: str) -> tuple[float, ...]:
    """ "1" or "0,0.25,0.5,0.75,1" -> floats in [0, 1], duplicates dropped, order kept."""
    values: list[float] = []
    for part in (p.strip() for p in (spec or "").split(",")):
        try:
            value = check_alpha(float(part))
        except ValueError as exc:
            raise UserError(f"bad alpha {part!r} in {spec!r}: use numbers such as 1 or 0,0.5,1") from exc
        if value not in values:
            values.append(value)
    return tuple(values)


def check_compatible(
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    *,
    recipient_arch: str = "",
    donor_arch: str = "",
    names: tuple[str, str] = ("the recipient", "the donor"),
) -> None:
    """Raise one clear UserError naming the first tensor (in the recipient's order) that differs.

    BN step counters (`num_batches_tracked`) are ignored: they are no kind and play no part in eval.
    """
    a, b = names
    if recipient_arch and donor_arch and recipient_arch != donor_arch:
        raise UserError(f"{a} is a {recipient_arch} but {b} is a {donor_arch}: they need the same architecture")
    for key, tensor in recipient.items():
        if key.endswith(_COUNTERS):
            continue
        if key not in donor:
            raise UserError(f"{b} has no tensor {key} (shape {tuple(tensor.shape)} in {a})")
        other = donor[key]
        if tuple(other.shape) != tuple(tensor.shape):
            raise UserError(f"tensor {key} differs: shape {tuple(tensor.shape)} in {a}, {tuple(other.shape)} in {b}")
        if other.dtype != tensor.dtype:
            raise UserError(f"tensor {key} differs: dtype {tensor.dtype} in {a}, {other.dtype} in {b}")
    for key in donor:
        if key not in recipient and not key.endswith(_COUNTERS):
            raise UserError(f"{a} has no tensor {key} ({b} has one)")


def in_model_order(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """`state` (e.g. read from a file, in any order) with the model's keys first, in forward definition order."""
    order = [k for k in model.state_dict() if k in state]
    return {**{k: state[k] for k in order}, **{k: v for k, v in state.items() if k not in order}}


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's live parameters and buffers by state-dict key (changing them changes the model)."""
    tensors: dict[str, torch.Tensor] = dict(model.named_buffers())
    tensors.update(dict(model.named_parameters()))
    return tensors


def donor_like(donor: Mapping[str, torch.Tensor], model: nn.Module, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """The donor's `keys` with the device, dtype and memory layout of the model's own tensors."""
    live = model_tensors(model)
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        if key not in live:
            raise UserError(f"the model has no tensor {key}")
        out[key] = torch.empty_like(live[key]).copy_(donor[key])
    return out


class Swap:
    """Swap `keys` of `model` towards the donor's values in place; `restore` undoes it bit-exactly.

    Use as a context manager (restored on exit, even after an error) or call apply/restore.
    """

    def __init__(self, model: nn.Module, donor: Mapping[str, torch.Tensor], keys: Sequence[str], alpha: float = 1.0):
        live = model_tensors(model)
        missing = [k for k in keys if k not in live or k not in donor]
        if missing:
            raise UserError(f"cannot swap {missing[0]}: not a tensor of both models")
        self._targets = [(live[k], donor[k]) for k in keys]
        self.keys = tuple(keys)
        self.alpha = check_alpha(alpha)
        self._saved: list[torch.Tensor] | None = None

    def apply(self) -> None:
        if self._saved is not None:
            raise RuntimeError("swap already applied")
        with torch.no_grad():
            self._saved = [t.detach().clone() for t, _ in self._targets]
            for (t, d), saved in zip(self._targets, self._saved):
                if self.alpha == 1.0:
                    t.copy_(d)
                elif self.alpha != 0.0:
                    t.copy_(torch.lerp(saved, d.to(saved.dtype), self.alpha))

    def restore(self) -> None:
        if self._saved is None:
            return
        with torch.no_grad():
            for (t, _), saved in zip(self._targets, self._saved):
                t.copy_(saved)
        self._saved = None

    def __enter__(self) -> Swap:
        self.apply()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
