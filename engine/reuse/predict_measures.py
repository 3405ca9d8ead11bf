"""Per-tensor measures of how a scan's donor differs from its recipient, for `predict` and `plan --from`.

Each measure is a number per state-dict key that needs no swap to compute; the question the
predictor asks is whether it ranks the tensors the way the swaps' Dice drops do:

- rmse: RMSE between the recipient's and the donor's tensor (engine/compare/rmse.py).
- relative: that RMSE over the RMS of the recipient's tensor.
- aligned-rmse: the RMSE after the donor's channels are permuted to the recipient's (weight
  matching, engine/compare/align_states.py; checked to leave the donor's outputs within 1e-5 on
  the scan's slices).
- cka: linear CKA of the layer's activations (pooled features, engine/compare/cka.py) on the
  scan's slices; one value per layer, shared by its kinds. High means similar.
- bn-dt, bn-ds: what swapping the one BN tensor does to the layer's eval-mode affine map
  y = s x + t (engine/compare/bn.py): mean |t' - t| and mean |s'/s - 1| over channels. Only BN
  kinds of norms with running statistics (RM and RB leave s alone: bn-ds is 0 for them).
- norm: the L2 (Frobenius) norm of the recipient's tensor: a large tensor is a guess at an
  important one, the baseline any difference measure should beat.
A measure that cannot be computed for a model (no graph to align, no running statistics) is left
out with a note; it does not stop the others.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.compare.align_states import aligned_donor
from reuse_console.engine.compare.bn import analyse
from reuse_console.engine.compare.layer_similarity import pair_cka
from reuse_console.engine.compare.rmse import compare_states
from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import load_model, model_in_channels
from reuse_console.engine.swaps.donors import donor_tensors
from reuse_console.engine.swaps.swap import check_compatible, in_model_order
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

MEASURES: tuple[str, ...] = ("rmse", "relative", "aligned-rmse", "cka", "bn-dt", "bn-ds", "norm")
HIGH_MEANS_SIMILAR = frozenset({"cka"})  # for the others a small value means "close to the recipient"
NEEDS_DATA = frozenset({"aligned-rmse", "cka"})


@dataclass
class Pair:
    """A scan's recipient model and state, its donor's state, and the scan's evaluation batches."""

    model: nn.Module
    recipient: dict[str, torch.Tensor]
    donor: dict[str, torch.Tensor]
    index: LayerIndex
    batches: list[Any]
    names: tuple[str, str]
    extra: dict[str, Any]
    arch: str = ""


def parse_measures(spec: str | Sequence[str]) -> tuple[str, ...]:
    """`all` or a comma list of MEASURES, in MEASURES order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = {m.strip().lower() for m in items if m.strip()}
    if "all" in wanted:
        return MEASURES
    unknown = sorted(wanted - set(MEASURES))
    if unknown or not wanted:
        raise UserError(f"unknown measure {(unknown or [''])[0]!r}: use all or some of {', '.join(MEASURES)}")
    return tuple(m for m in MEASURES if m in wanted)


def load_pair(lab: Lab, scan: Any, *, batch: int = 32, with_data: bool = True) -> Pair:
    """The recipient and donor of `scan` (a ScanResult), on the CPU, and its slices as batches."""
    model, meta = load_model(lab, scan.recipient, device="cpu")
    donor, donor_arch = donor_tensors(lab, scan.donor, scan.recipient, meta)
    check_compatible(model.state_dict(), donor, recipient_arch=meta.arch, donor_arch=donor_arch)
    recipient = in_model_order(model.state_dict(), model)
    donor = in_model_order(donor, model)
    batches: list[Any] = []
    size = min(64, int(meta.extra.get("size") or 64))
    if with_data:
        samples = checkpoint_samples(load_slices(lab, scan.data), model, meta.extra)
        split = str(scan.options.get("split", "val"))
        batches, subjects = eval_batches(samples, split, batch=batch)
        if not subjects:
            raise UserError(f"data set {scan.data!r} has no {split} subjects to measure on")
        size = min(64, int(samples.size))
    index = LayerIndex.from_model(model, model_in_channels(meta.arch_config), size=size)
    return Pair(model, recipient, donor, index, batches, (scan.recipient, scan.donor), dict(meta.extra), meta.arch)


def _per_key(comp: Any, index: LayerIndex, values: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    for li, name in enumerate(comp.layers):
        layer = index.get(name)
        for ki, kind in enumerate(comp.kinds):
            value = float(values[li, ki])
            if np.isfinite(value) and kind in layer.kinds:
                out[layer.key(kind)] = value
    return out


def _aligned(pair: Pair, report: Reporter) -> dict[str, torch.Tensor]:
    return aligned_donor(pair.model, pair.recipient, pair.donor, [b.images for b in pair.batches], report=report)


def _cka(pair: Pair, device: str) -> dict[str, float]:
    donor_model = copy.deepcopy(pair.model)
    donor_model.load_state_dict(pair.donor, strict=False)
    layers = list(pair.index.layers)
    per_layer = pair_cka(
        pair.model, donor_model, layers, pair.batches, names=pair.names, extra=pair.extra, device=device
    )
    return {layer.key(kind): per_layer[layer.name] for layer in layers for kind in layer.kinds}


def _bn(pair: Pair) -> tuple[dict[str, float], dict[str, float]]:
    shift: dict[str, float] = {}
    scale: dict[str, float] = {}
    for bn_layer in analyse(pair.model, pair.index, pair.recipient, pair.donor):
        layer = pair.index.get(bn_layer.layer)
        for kind, ratio in bn_layer.ratio.items():
            key = layer.key(kind)
            shift[key] = float(np.abs(bn_layer.diff[kind]).mean())
            scale[key] = float(np.abs(ratio - 1.0).mean())
    return shift, scale


def tensor_measures(
    pair: Pair, measures: Sequence[str] = MEASURES, *, device: str = "cpu", report: Reporter = silent
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """measure -> {state-dict key -> value} for every tensor of the pair, and notes on measures left out."""
    out: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    if {"rmse", "relative"} & set(measures):
        comp = compare_states([pair.recipient, pair.donor], pair.index.layers, models=list(pair.names))
        out["rmse"] = _per_key(comp, pair.index, comp.rmse[0])
        out["relative"] = _per_key(comp, pair.index, comp.relative[0])
    if "aligned-rmse" in measures:
        report(Message("aligning the donor to the recipient (weight matching)"))
        try:
            aligned = _aligned(pair, report)
            comp = compare_states([pair.recipient, aligned], pair.index.layers, models=list(pair.names))
            out["aligned-rmse"] = _per_key(comp, pair.index, comp.rmse[0])
        except UserError as exc:
            notes.append(f"aligned-rmse left out: {exc}")
    if "cka" in measures:
        report(Message("CKA of every layer on the scan's slices"))
        out["cka"] = _cka(pair, device)
    if {"bn-dt", "bn-ds"} & set(measures):
        out["bn-dt"], out["bn-ds"] = _bn(pair)
        if not out["bn-dt"]:
            notes.append("bn-dt, bn-ds left out: no norm with running statistics")
    if "norm" in measures:
        out["norm"] = {
            key: float(torch.linalg.vector_norm(t.detach().to(torch.float64)))
            for key, t in pair.recipient.items()
            if t.is_floating_point()
        }
    return {m: out[m] for m in measures if m in out and out[m]}, notes
