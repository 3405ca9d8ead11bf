"""RMSE between models' tensors, per layer and kind (the paper's figures 6, 10, 11, 12).

For two tensors a (the first model's) and b of one layer and kind:
  RMSE(a, b) = sqrt(mean((a - b)^2)),   relative = RMSE / RMS(a),   RMS(a) = sqrt(mean(a^2)).
For N models every pair (i < j) is compared, i taking the role of a. Computed in float64.

Stored as `comparisons/<name>.h5` (kind "comparison"):
  attrs   models (JSON list), layers, kinds (JSON), summary, provenance
  /layers/name (L,) strings, /layers/index (L,) int64 (-1: unnumbered), /kinds (K,) strings
  /pairs (P, 2) int64      model indices (a, b)
  /rmse (P, L, K), /relative (P, L, K) float64 (NaN where the layer has no such kind)
  /rms (M, L, K) float64   each model's RMS
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reuse_console.engine.compare.align_states import align_to_first
from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.engine.models.layers import KINDS, Layer, LayerIndex
from reuse_console.engine.models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config
from reuse_console.engine.models.state_checks import check_finite
from reuse_console.engine.swaps.swap import check_compatible, in_model_order
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

KIND = "comparison"


@dataclass
class Comparison:
    """RMSE and relative RMSE per pair of models, layer and kind."""

    models: list[str]
    layers: list[str]  # layer names ("1", "head")
    index: list[int | None]  # layer numbers
    kinds: list[str]
    pairs: list[tuple[int, int]]
    rmse: np.ndarray  # (P, L, K)
    relative: np.ndarray  # (P, L, K)
    rms: np.ndarray  # (M, L, K)
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        """{"models", "pairs": [{"a", "b", "rows": [{"layer", "kind", "rmse", "relative"}]}]}."""
        pairs = []
        for p, (a, b) in enumerate(self.pairs):
            rows = []
            for li, layer in enumerate(self.layers):
                number = self.index[li]
                label: int | str = number if number is not None else layer
                for ki, kind in enumerate(self.kinds):
                    value = self.rmse[p, li, ki]
                    if np.isnan(value):
                        continue
                    rows.append(
                        {
                            "layer": label,
                            "kind": kind,
                            "rmse": float(value),
                            "relative": finite_or_none(self.relative[p, li, ki]),
                            "rms_a": float(self.rms[a, li, ki]),
                        }
                    )
            pairs.append({"a": self.models[a], "b": self.models[b], "rows": rows})
        return {"name": self.name, "models": list(self.models), "kinds": list(self.kinds), "pairs": pairs}


def _rms(t: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean(t.double() ** 2)))


def compare_states(
    states: Sequence[Mapping[str, torch.Tensor]],
    layers: Sequence[Layer],
    kinds: Sequence[str] = KINDS,
    models: Sequence[str] | None = None,
) -> Comparison:
    """RMSE per pair, layer and kind for state dicts of one architecture (checked tensor by tensor)."""
    if len(states) < 2:
        raise UserError("RMSE needs at least two models")
    names = list(models) if models is not None else [f"model{i + 1}" for i in range(len(states))]
    for name, state in zip(names[1:], states[1:]):
        check_compatible(states[0], state, names=(names[0], name))
    kinds = [k for k in KINDS if k in kinds]
    pairs = list(itertools.combinations(range(len(states)), 2))
    shape = (len(layers), len(kinds))
    rms = np.full((len(states), *shape), np.nan)
    rmse = np.full((len(pairs), *shape), np.nan)
    for li, layer in enumerate(layers):
        for ki, kind in enumerate(kinds):
            if kind not in layer.kinds:
                continue
            key = layer.key(kind)
            tensors = [s[key].detach().to("cpu", torch.float64) for s in states]
            for m, t in enumerate(tensors):
                rms[m, li, ki] = _rms(t)
            for p, (a, b) in enumerate(pairs):
                rmse[p, li, ki] = _rms(tensors[a] - tensors[b])
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = rmse / np.stack([rms[a] for a, _ in pairs])
    return Comparison(
        names,
        [layer.name for layer in layers],
        [layer.index for layer in layers],
        list(kinds),
        pairs,
        rmse,
        relative,
        rms,
    )


def summary(comp: Comparison) -> dict[str, Any]:
    out: dict[str, Any] = {"models": ", ".join(comp.models), "pairs": len(comp.pairs), "layers": len(comp.layers)}
    if comp.pairs and np.isfinite(comp.relative).any():
        out["max_relative"] = round(float(np.nanmax(np.where(np.isfinite(comp.relative), comp.relative, np.nan))), 4)
    return out


def write_comparison(path: Path, comp: Comparison, provenance: dict[str, Any] | None = None) -> Path:
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        set_json(f, "models", comp.models)
        set_json(f, "summary", summary(comp))
        write_strings(f, "layers/name", comp.layers)
        f.create_dataset("layers/index", data=np.array([-1 if i is None else i for i in comp.index], dtype=np.int64))
        write_strings(f, "kinds", comp.kinds)
        f.create_dataset("pairs", data=np.array(comp.pairs, dtype=np.int64).reshape(-1, 2))
        f.create_dataset("rmse", data=comp.rmse)
        f.create_dataset("relative", data=comp.relative)
        f.create_dataset("rms", data=comp.rms)
    return path


def read_comparison(path: Path, name: str = "") -> Comparison:
    with open_h5(path) as f:
        measure = attr_str(f, "measure", "rmse")
        if measure != "rmse":  # a CKA comparison (engine/compare/cka_store.py) shares the folder
            ref = name or path.name[:-3]
            raise UserError(f"comparison {ref!r} holds {measure}, not RMSE: `reuse-console show {ref}` prints it")
        index = [None if int(i) < 0 else int(i) for i in f["layers/index"][()]]
        return Comparison(
            get_json(f, "models", []),
            read_strings(f["layers/name"]),
            index,
            read_strings(f["kinds"]),
            [(int(a), int(b)) for a, b in f["pairs"][()]],
            f["rmse"][()],
            f["relative"][()],
            f["rms"][()],
            name or path.name[:-3],
        )


def run_rmse(
    lab: Lab,
    refs: Sequence[str],
    *,
    layers: str = "all",
    kinds: str = "all",
    name: str | None = None,
    align: bool = False,
) -> Comparison:
    """RMSE of checkpoints `refs` (all pairs), stored as `comparisons/<name>.h5`. With `align`, every
    checkpoint after the first is first aligned to it (engine/compare/align.py, in memory)."""
    if len(refs) < 2:
        raise UserError("give at least two checkpoints to compare")
    if len(set(refs)) != len(refs):
        raise UserError("the same checkpoint is named twice")
    loaded = [read_checkpoint(checkpoint_path(lab, ref)) for ref in refs]
    for ref, (state, _) in zip(refs, loaded):
        check_finite(state, f"checkpoint {ref!r}")
    first_meta = loaded[0][1]
    for ref, (_, meta) in zip(refs[1:], loaded[1:]):
        if meta.arch != first_meta.arch:
            raise UserError(f"{refs[0]} is a {first_meta.arch} but {ref} is a {meta.arch}: RMSE needs one architecture")
    model = build_model(first_meta.arch, rebuild_config(first_meta.arch_config), trusted=False)
    index = LayerIndex.from_model(model, model_in_channels(first_meta.arch_config))
    states = [in_model_order(s, model) for s, _ in loaded]
    if align:
        for ref, state in zip(refs[1:], states[1:]):
            check_compatible(states[0], state, names=(refs[0], ref))
        size = min(64, int(first_meta.extra.get("size") or 64))
        in_channels = model_in_channels(first_meta.arch_config)
        states = align_to_first(model, states, list(refs), in_channels=in_channels, size=size)
    comp = compare_states(states, index.select(layers), LayerIndex.parse_kinds(kinds), list(refs))
    if name is None:
        base = ("rmse-aligned-" if align else "rmse-") + "-".join(Path(r).name.removesuffix(".h5") for r in refs)
        base = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in base)[:90]
        name = lab.unique_name("comparisons", base)
    else:
        lab.ensure_new("comparisons", name)
    comp.name = name
    provenance = {"models": list(refs), "layers": layers, "kinds": kinds, "align": align}
    write_comparison(lab.path("comparisons", name), comp, provenance)
    return comp
