"""BN scale and shift: what a swap of one BN tensor does to the layer's affine map (the paper's theory).

In eval mode a BatchNorm layer is y = s * x + t per channel, with
  s = RW / sqrt(RV + eps)      t = RB - RM * s
(RW = 1, RB = 0 when the layer has no affine parameters). Replacing one tensor of the recipient
with the donor's changes s or t in a way the parameters alone determine:
  RM: s unchanged, t changes by (RM_r - RM_d) * s_r
  RV: s scaled by sqrt((RV_r + eps) / (RV_d + eps)), t follows through -RM_r * s
  RW: s scaled by RW_d / RW_r, t follows through -RM_r * s
  RB: s unchanged, t changes by RB_d - RB_r
Here every replacement is computed the same way (rebuild s' and t' from the swapped tensors), and
reported per channel as the ratio s'/s and the difference t' - t, summarised per layer.

The theory holds for every norm that keeps running statistics (BatchNorm, SyncBatchNorm, and
InstanceNorm with track_running_stats: eval mode uses RM and RV). GroupNorm, LayerNorm and
InstanceNorm without running statistics normalise each input by its own statistics, so there is
no fixed s and t: those layers are left out and `BNStudy.note` says so in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.engine.models.layers import BN_KINDS, Layer, LayerIndex, keeps_running_stats
from reuse_console.engine.models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config
from reuse_console.engine.models.state_checks import check_finite
from reuse_console.engine.swaps.swap import check_compatible, in_model_order
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

_LEAF = {"RM": "running_mean", "RV": "running_var", "RW": "weight", "RB": "bias"}


def scale_shift(
    rm: np.ndarray, rv: np.ndarray, rw: np.ndarray, rb: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BN as y = s * x + t: returns (s, t) per channel (float64)."""
    s = rw / np.sqrt(rv + eps)
    return s, rb - rm * s


def bn_tensors(state: Mapping[str, torch.Tensor], bn: str, channels: int) -> dict[str, np.ndarray]:
    """RM, RV, RW, RB of BN module `bn` as float64 arrays (RW = 1, RB = 0 when not affine)."""
    out: dict[str, np.ndarray] = {}
    for kind, leaf in _LEAF.items():
        key = f"{bn}.{leaf}"
        if key in state:
            out[kind] = state[key].detach().to("cpu", torch.float64).numpy()
        elif kind in ("RW", "RB"):
            out[kind] = np.ones(channels) if kind == "RW" else np.zeros(channels)
        else:
            raise UserError(
                f"BN layer {bn} has no {leaf} (track_running_stats off?): eval-mode scale/shift is undefined"
            )
    return out


@dataclass
class BNLayer:
    """Scale and shift of one BN layer in both models, and the effect of each single-kind swap."""

    layer: str
    index: int | None
    module: str
    eps: float
    s: dict[str, np.ndarray]  # "recipient" / "donor" -> (C,)
    t: dict[str, np.ndarray]
    ratio: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> s'/s per channel
    diff: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> t' - t per channel

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layer": self.index if self.index is not None else self.layer,
            "module": self.module,
            "channels": int(self.s["recipient"].size),
            "eps": self.eps,
            "s": {m: _stats(v) for m, v in self.s.items()},
            "t": {m: _stats(v) for m, v in self.t.items()},
            "swaps": {},
        }
        for kind in self.ratio:
            r, d = self.ratio[kind], self.diff[kind]
            with np.errstate(divide="ignore", invalid="ignore"):
                log_r = np.log(np.abs(r))
            finite = np.isfinite(log_r)
            out["swaps"][kind] = {
                "scale_ratio_geomean": finite_or_none(np.exp(log_r[finite].mean())) if finite.any() else None,
                "scale_ratio_min": finite_or_none(np.nanmin(r)),
                "scale_ratio_max": finite_or_none(np.nanmax(r)),
                "sign_flips": int((r < 0).sum()),
                "shift_diff_mean": finite_or_none(d.mean()),
                "shift_diff_mean_abs": finite_or_none(np.abs(d).mean()),
                "shift_diff_max_abs": finite_or_none(np.abs(d).max()),
            }
        return out


def _stats(v: np.ndarray) -> dict[str, float | None]:
    return {"mean": finite_or_none(v.mean()), "min": finite_or_none(v.min()), "max": finite_or_none(v.max())}


def analyse_layer(
    layer: Layer, eps: float, recipient: Mapping[str, torch.Tensor], donor: Mapping[str, torch.Tensor]
) -> BNLayer:
    """s, t of both models for one BN layer and the change of each single-kind replacement."""
    bn = layer.bn
    if bn is None:
        raise ValueError(f"layer {layer.name} has no norm to analyse")
    channels = int(recipient[f"{bn}.running_mean"].numel()) if f"{bn}.running_mean" in recipient else 0
    r = bn_tensors(recipient, bn, channels)
    d = bn_tensors(donor, bn, channels)
    s_r, t_r = scale_shift(r["RM"], r["RV"], r["RW"], r["RB"], eps)
    s_d, t_d = scale_shift(d["RM"], d["RV"], d["RW"], d["RB"], eps)
    out = BNLayer(layer.name, layer.index, bn, eps, {"recipient": s_r, "donor": s_d}, {"recipient": t_r, "donor": t_d})
    for kind in BN_KINDS:
        if kind not in layer.kinds:
            continue
        swapped = dict(r)
        swapped[kind] = d[kind]
        s_new, t_new = scale_shift(swapped["RM"], swapped["RV"], swapped["RW"], swapped["RB"], eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            out.ratio[kind] = s_new / s_r
        out.diff[kind] = t_new - t_r
    return out


@dataclass
class BNStudy:
    """The BN theory applied to two checkpoints: its layers, and a line on the norms it leaves out."""

    layers: list[BNLayer]
    note: str | None = None


def _theory_layers(model: nn.Module, index: LayerIndex) -> tuple[list[Layer], list[Layer]]:
    """Layers of `index` with a norm: (those with running statistics, the others)."""
    modules = dict(model.named_modules())
    normed = [layer for layer in index.layers if layer.bn is not None]
    inside = [layer for layer in normed if keeps_running_stats(modules[str(layer.bn)])]
    return inside, [layer for layer in normed if layer not in inside]


def _norm_counts(layers: list[Layer]) -> str:
    """ "InstanceNorm2d 14, GroupNorm 2": how many of `layers` end in each norm type."""
    counts: dict[str, int] = {}
    for layer in layers:
        counts[str(layer.norm)] = counts.get(str(layer.norm), 0) + 1
    return ", ".join(f"{norm} {count}" for norm, count in counts.items())


def outside_note(model: nn.Module, index: LayerIndex) -> str | None:
    """One line naming the norms the BN theory cannot read (None when it reads them all)."""
    _, outside = _theory_layers(model, index)
    if not outside:
        return None
    return (
        f"{len(outside)} norm layer(s) without running statistics ({_norm_counts(outside)}) left out: "
        "each input is normalised by its own statistics, so there is no fixed s and t"
    )


def analyse(
    model: nn.Module, index: LayerIndex, recipient: Mapping[str, torch.Tensor], donor: Mapping[str, torch.Tensor]
) -> list[BNLayer]:
    """Every layer of `index` whose norm keeps running statistics, in layer order; eps from each norm module."""
    modules = dict(model.named_modules())
    inside, _ = _theory_layers(model, index)
    return [analyse_layer(layer, float(modules[str(layer.bn)].eps), recipient, donor) for layer in inside]


def read_bn(lab: Lab, recipient: str, donor: str) -> BNStudy:
    """BN scale/shift analysis of two checkpoints of one architecture. A model with no norm the
    theory reads gives no layers and a note saying why (the console shows it in place of a table)."""
    r_state, r_meta = read_checkpoint(checkpoint_path(lab, recipient))
    d_state, d_meta = read_checkpoint(checkpoint_path(lab, donor))
    check_finite(r_state, f"checkpoint {recipient!r}")
    check_finite(d_state, f"checkpoint {donor!r}")
    model = build_model(r_meta.arch, rebuild_config(r_meta.arch_config), trusted=False)
    r_state = in_model_order(r_state, model)
    check_compatible(r_state, d_state, recipient_arch=r_meta.arch, donor_arch=d_meta.arch)
    index = LayerIndex.from_model(model, model_in_channels(r_meta.arch_config))
    layers = analyse(model, index, r_state, d_state)
    if not layers:
        _, outside = _theory_layers(model, index)
        found = f" (its norms: {_norm_counts(outside)})" if outside else " (it has no norm layers)"
        return BNStudy([], f"{recipient} has no norm with running statistics, which the BN theory needs{found}")
    return BNStudy(layers, outside_note(model, index))


def run_bn(lab: Lab, recipient: str, donor: str) -> BNStudy:
    """`read_bn` for the `bn` command: a model with no norm the theory reads is a UserError."""
    study = read_bn(lab, recipient, donor)
    if not study.layers:
        raise UserError(str(study.note))
    return study
