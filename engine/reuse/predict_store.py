"""Predictor tables in the lab: `comparisons/<id>.h5` with `measure = "predictor"` (store/SCHEMA.md).

They sit with the RMSE and CKA comparisons, which they are built from, so `ls comparisons`, `show`
and `report` find them there; the `measure` attribute tells the three apart. Layout:
  attrs   scan, recipient, donor, data, max_dice_drop, recalibrated, resamples, seed, seconds, measure,
          measures (JSON), notes (JSON), summary (JSON), provenance
  /tensors/key, /tensors/layer, /tensors/kind (T,) strings; /tensors/index (T,) int64 (-1: unnumbered)
  /tensors/drop (T,) float64        worst foreground Dice drop of the swap (recalibrated Dice if `recalibrated`)
  /tensors/values (T, M) float64    each measure's value (NaN: none for this tensor)
  /stats/measure, /stats/group (R,) strings; /stats/n, /stats/reusable (R,) int64
  /stats/rho, /stats/rho_low, /stats/rho_high, /stats/auc (R,) float64
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.reuse.predict import ALL, Predictor, StatRow, TensorRow
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

KIND = "comparison"
MEASURE = "predictor"


def summary(result: Predictor) -> dict[str, Any]:
    """What a listing shows: the scan, the tensor count and the best measure by AUC."""
    out: dict[str, Any] = {
        "measure": MEASURE,
        "scan": result.scan,
        "tensors": len(result.tensors),
        "max_dice_drop": result.max_dice_drop,
    }
    if result.recalibrated:
        out["recalibrated"] = True
    best = result.best()
    if best is not None:
        out["best"] = f"{best.measure} AUC {best.auc:.2f}"
    return out


def newest_for_scan(lab: Lab, scan: str) -> str | None:
    """The id of the newest stored predictor table of scan `scan` (None when there is none)."""
    found = [
        e
        for e in lab.entries("comparisons")
        if e.ok and e.summary.get("measure") == MEASURE and e.summary.get("scan") == scan
    ]
    return max(found, key=lambda e: (e.created, e.path.stat().st_mtime_ns)).id if found else None


def is_predictor(path: Path) -> bool:
    with open_h5(path) as f:
        return attr_str(f, "measure") == MEASURE


def write_predictor(path: Path, result: Predictor, provenance: dict[str, Any] | None = None) -> Path:
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        f.attrs["measure"] = MEASURE
        for key in ("scan", "recipient", "donor", "data"):
            f.attrs[key] = str(getattr(result, key))
        f.attrs["max_dice_drop"] = float(result.max_dice_drop)
        f.attrs["recalibrated"] = bool(result.recalibrated)
        f.attrs["resamples"] = int(result.resamples)
        f.attrs["seed"] = int(result.seed)
        f.attrs["seconds"] = float(result.seconds)
        set_json(f, "measures", list(result.measures))
        set_json(f, "notes", list(result.notes))
        set_json(f, "summary", summary(result))
        t = result.tensors
        write_strings(f, "tensors/key", [x.key for x in t])
        write_strings(f, "tensors/layer", [x.layer for x in t])
        write_strings(f, "tensors/kind", [x.kind for x in t])
        f.create_dataset("tensors/index", data=np.array([-1 if x.index is None else x.index for x in t], np.int64))
        f.create_dataset("tensors/drop", data=np.array([x.drop for x in t], np.float64))
        values = np.array([x.values for x in t], np.float64).reshape(len(t), len(result.measures))
        f.create_dataset("tensors/values", data=values)
        r = result.rows
        write_strings(f, "stats/measure", [x.measure for x in r])
        write_strings(f, "stats/group", [x.group for x in r])
        f.create_dataset("stats/n", data=np.array([x.n for x in r], np.int64))
        f.create_dataset("stats/reusable", data=np.array([x.reusable for x in r], np.int64))
        for column in ("rho", "low", "high", "auc"):
            name = {"low": "rho_low", "high": "rho_high"}.get(column, column)
            f.create_dataset(f"stats/{name}", data=np.array([getattr(x, column) for x in r], np.float64))
    return path


def read_predictor(path: Path, name: str = "") -> Predictor:
    with open_h5(path) as f:
        measures = get_json(f, "measures", []) or []
        index = f["tensors/index"][()]
        values = f["tensors/values"][()]
        tensors = [
            TensorRow(key, layer, None if int(i) < 0 else int(i), kind, float(drop), tuple(float(v) for v in row))
            for key, layer, kind, i, drop, row in zip(
                read_strings(f["tensors/key"]),
                read_strings(f["tensors/layer"]),
                read_strings(f["tensors/kind"]),
                index,
                f["tensors/drop"][()],
                values,
            )
        ]
        s = f["stats"]
        rows = [
            StatRow(m, g, int(n), int(k), float(rho), float(lo), float(hi), float(a))
            for m, g, n, k, rho, lo, hi, a in zip(
                read_strings(s["measure"]),
                read_strings(s["group"]),
                s["n"][()],
                s["reusable"][()],
                s["rho"][()],
                s["rho_low"][()],
                s["rho_high"][()],
                s["auc"][()],
            )
        ]
        return Predictor(
            scan=attr_str(f, "scan"),
            recipient=attr_str(f, "recipient"),
            donor=attr_str(f, "donor"),
            data=attr_str(f, "data"),
            max_dice_drop=float(f.attrs.get("max_dice_drop", 0.05)),
            measures=list(measures),
            tensors=tensors,
            rows=rows,
            resamples=int(f.attrs.get("resamples", 0)),
            seed=int(f.attrs.get("seed", 0)),
            notes=get_json(f, "notes", []) or [],
            seconds=float(f.attrs.get("seconds", 0.0)),
            name=name or path.name[:-3],
            recalibrated=bool(f.attrs.get("recalibrated", False)),
        )


__all__ = ["ALL", "MEASURE", "is_predictor", "newest_for_scan", "read_predictor", "write_predictor"]
