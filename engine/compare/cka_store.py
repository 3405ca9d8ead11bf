"""CKA comparisons in the lab: `comparisons/<id>.h5` with `measure = "cka"` (store/SCHEMA.md).

They sit beside the RMSE comparisons (same folder, kind, layer and pair layout) so listings,
`show` and plans find them where they look for comparisons; the `measure` attribute tells the two
apart (an RMSE file has none). Layout:
  attrs   models, data, split, features, pixels, size, samples, measure, summary, provenance
  /layers/name (L,) strings, /layers/index (L,) int64 (-1: unnumbered)
  /pairs (P, 2) int64       model indices (a, b), a < b
  /linear (P, L), /debiased (P, L) float64    CKA per pair and layer (NaN: undefined)
  /channels (M, L) int64    each model's feature width per layer
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings

KIND = "comparison"
MEASURE = "cka"


@dataclass
class Similarity:
    """Linear and debiased CKA per pair of models and layer, and what they were measured on."""

    models: list[str]
    layers: list[str]
    index: list[int | None]
    pairs: list[tuple[int, int]]
    linear: np.ndarray  # (P, L)
    debiased: np.ndarray  # (P, L)
    channels: np.ndarray  # (M, L)
    data: str = ""
    split: str = "val"
    features: str = "pooled"
    pixels: int = 0
    size: int = 0
    samples: int = 0  # rows per layer: slices (pooled) or slices * pixels
    seconds: float = 0.0
    passes: int = 1
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """{"models", "data", "features", "samples", "pairs": [{"a", "b", "rows": [{"layer", "linear", "debiased"}]}]}."""
        pairs = []
        for p, (a, b) in enumerate(self.pairs):
            rows = []
            for li, layer in enumerate(self.layers):
                number = self.index[li]
                rows.append(
                    {
                        "layer": number if number is not None else layer,
                        "linear": finite_or_none(self.linear[p, li]),
                        "debiased": finite_or_none(self.debiased[p, li]),
                    }
                )
            pairs.append({"a": self.models[a], "b": self.models[b], "rows": rows})
        return {
            "name": self.name,
            "measure": MEASURE,
            "models": list(self.models),
            "data": self.data,
            "split": self.split,
            "features": self.features,
            "pixels": self.pixels if self.features == "pixels" else None,
            "size": self.size,
            "samples": self.samples,
            "seconds": round(self.seconds, 3),
            "pairs": pairs,
        }


def summary(sim: Similarity) -> dict[str, Any]:
    out: dict[str, Any] = {
        "measure": MEASURE,
        "models": ", ".join(sim.models),
        "pairs": len(sim.pairs),
        "layers": len(sim.layers),
        "data": sim.data,
        "features": sim.features,
    }
    if np.isfinite(sim.linear).any():
        out["min_linear"] = round(float(np.nanmin(np.where(np.isfinite(sim.linear), sim.linear, np.nan))), 4)
    return out


def is_cka(path: Path) -> bool:
    """Whether a comparison file holds CKA (an RMSE comparison has no `measure`)."""
    with open_h5(path) as f:
        return attr_str(f, "measure") == MEASURE


def write_similarity(path: Path, sim: Similarity, provenance: dict[str, Any] | None = None) -> Path:
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        f.attrs["measure"] = MEASURE
        set_json(f, "models", sim.models)
        set_json(f, "summary", summary(sim))
        set_json(f, "options", sim.options)
        for key in ("data", "split", "features"):
            f.attrs[key] = getattr(sim, key)
        for key in ("pixels", "size", "samples", "passes"):
            f.attrs[key] = int(getattr(sim, key))
        f.attrs["seconds"] = float(sim.seconds)
        write_strings(f, "layers/name", sim.layers)
        f.create_dataset("layers/index", data=np.array([-1 if i is None else i for i in sim.index], dtype=np.int64))
        f.create_dataset("pairs", data=np.array(sim.pairs, dtype=np.int64).reshape(-1, 2))
        f.create_dataset("linear", data=np.asarray(sim.linear, dtype=np.float64))
        f.create_dataset("debiased", data=np.asarray(sim.debiased, dtype=np.float64))
        f.create_dataset("channels", data=np.asarray(sim.channels, dtype=np.int64))
    return path


def read_similarity(path: Path, name: str = "") -> Similarity:
    with open_h5(path) as f:
        return Similarity(
            models=get_json(f, "models", []),
            layers=read_strings(f["layers/name"]),
            index=[None if int(i) < 0 else int(i) for i in f["layers/index"][()]],
            pairs=[(int(a), int(b)) for a, b in f["pairs"][()]],
            linear=f["linear"][()],
            debiased=f["debiased"][()],
            channels=f["channels"][()],
            data=attr_str(f, "data"),
            split=attr_str(f, "split", "val"),
            features=attr_str(f, "features", "pooled"),
            pixels=int(f.attrs.get("pixels", 0)),
            size=int(f.attrs.get("size", 0)),
            samples=int(f.attrs.get("samples", 0)),
            seconds=float(f.attrs.get("seconds", 0.0)),
            passes=int(f.attrs.get("passes", 1)),
            name=name or path.name[:-3],
            options=get_json(f, "options", {}) or {},
        )
