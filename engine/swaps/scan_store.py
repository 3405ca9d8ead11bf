"""Scan results in the lab: `scans/<name>.h5`, and the progress file of an unfinished scan.

Layout (schema 1, kind "scan"):
  attrs    recipient, donor, data, split, precision, device, engine, seconds, complete,
           classes (JSON), present (JSON), options (JSON), summary (JSON), provenance
  /subjects            (S,) strings
  /baseline/dice       (S, C) float64   Dice per subject and class of the unchanged recipient
  /variants/layer      (V,) strings     layer name ("3", "head") or selection ("1-5")
  /variants/index      (V,) int64       layer number, -1 when there is none
  /variants/kind       (V,) strings     "RM", or "RM,RV" for a multi-kind swap
  /variants/alpha      (V,) float64
  /variants/keys       (V,) strings     changed state-dict keys, comma-separated
  /variants/modules    (V,) strings     modules owning them, '+'-separated
  /variants/dice       (V, S, C) float64 (NaN where not evaluated yet)
  /variants/mean       (V, C) float64   mean over subjects
  /variants/done       (V,) bool
Dice follows the options' `empty` rule (absent: "one", MONAI ignore_empty=False; "ignore": a
class whose reference is empty in a subject is NaN there and left out of every mean) and unit
`per` (absent: "subject"; "volume": /subjects names volumes, each frame scored apart). A variant
not evaluated yet is a row of NaN; an evaluated one is never all NaN (background has a reference).
  /recalibrated/baseline (S, C) float64  with --recalibrate: the baseline with its norm statistics
                                         re-estimated (scope all; the raw one for scope downstream)
  /recalibrated/dice   (V, S, C) float64 each variant with its norm statistics re-estimated (NaN: not yet)
  /variants/confirmed  (V,) bool         with --confirm: the variants re-evaluated in fp32 (their
                                         /variants/dice is fp32; the baseline always is)
  /fast/baseline       (S, C) float64    with --confirm: the low-precision pass's values before it
  /fast/dice           (V, S, C) float64
The progress file `scans/<name>.h5.partial` has the same layout with `complete` false; listing
ignores it (it does not end in .h5) and it is replaced atomically after each chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.evaluation.metrics import nanmean
from reuse_console.engine.swaps.variants import ScanResult, Variant
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

KIND = "scan"
PROGRESS_SUFFIX = ".h5.partial"


def progress_path(lab: Lab, name: str) -> Path:
    """Where an unfinished scan keeps its finished variants."""
    return lab.folder("scans") / f"{lab.path('scans', name).stem}{PROGRESS_SUFFIX}"


def summary(result: ScanResult) -> dict[str, Any]:
    """What a listing shows: who, on what, how many variants, the baseline and the worst variant."""
    out: dict[str, Any] = {
        "recipient": result.recipient,
        "donor": result.donor,
        "data": result.data,
        "variants": len(result.variants),
        "precision": result.precision,
    }
    if result.confirmed is not None:
        out["confirmed"] = int(np.sum(result.confirmed))
    if result.options.get("pairs"):
        out["pairs"] = result.options["pairs"]
    out.update({key: result.options[key] for key in ("empty", "per") if key in result.options})  # non-defaults
    fg = [c for c in range(1, len(result.classes)) if result.present[c]]
    if fg and result.baseline.size:
        base = float(nanmean(result.baseline_mean[fg], axis=0))
        out["baseline_dice_fg"] = round(base, 4)
        done = result.done
        if done.any():
            fg_means = nanmean(result.mean[:, fg], axis=1)
            fg_means = np.where(done, fg_means, np.inf)
            worst = int(np.argmin(fg_means))
            v = result.variants[worst]
            out["worst"] = f"{v.layer} {v.kind} a={v.alpha:g}: {fg_means[worst] - base:+.3f}"
    return out


def write_scan(
    path: Path, result: ScanResult, *, complete: bool = True, provenance: dict[str, Any] | None = None
) -> Path:
    """Write `result` atomically to `path` (a finished scan, or a progress file)."""
    v = result.variants
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        for key in ("recipient", "donor", "data", "precision", "device", "engine"):
            f.attrs[key] = str(getattr(result, key))
        f.attrs["seconds"] = float(result.seconds)
        f.attrs["complete"] = bool(complete)
        set_json(f, "classes", list(result.classes))
        set_json(f, "present", [bool(p) for p in result.present])
        set_json(f, "options", result.options)
        set_json(f, "summary", summary(result))
        write_strings(f, "subjects", list(result.subjects))
        f.create_dataset("baseline/dice", data=np.asarray(result.baseline, dtype=np.float64))
        g = f.create_group("variants")
        write_strings(g, "layer", [x.layer for x in v])
        g.create_dataset("index", data=np.array([-1 if x.index is None else x.index for x in v], dtype=np.int64))
        write_strings(g, "kind", [x.kind for x in v])
        g.create_dataset("alpha", data=np.array([x.alpha for x in v], dtype=np.float64))
        write_strings(g, "keys", [",".join(x.keys) for x in v])
        write_strings(g, "modules", ["+".join(x.modules) for x in v])
        dice = np.asarray(result.dice, dtype=np.float64).reshape(len(v), len(result.subjects), len(result.classes))
        g.create_dataset("dice", data=dice)
        g.create_dataset("mean", data=nanmean(dice, axis=1))
        g.create_dataset("done", data=~np.isnan(dice).all(axis=(1, 2)))
        if result.recalibrated is not None and result.recalibrated_baseline is not None:
            f.create_dataset("recalibrated/baseline", data=np.asarray(result.recalibrated_baseline, dtype=np.float64))
            f.create_dataset("recalibrated/dice", data=np.asarray(result.recalibrated, dtype=np.float64))
        if result.confirmed is not None and result.fast_baseline is not None and result.fast_dice is not None:
            g.create_dataset("confirmed", data=np.asarray(result.confirmed, dtype=bool))
            f.create_dataset("fast/baseline", data=np.asarray(result.fast_baseline, dtype=np.float64))
            f.create_dataset("fast/dice", data=np.asarray(result.fast_dice, dtype=np.float64))
    return path


def read_scan(path: Path, name: str | None = None) -> ScanResult:
    """Read a scan (or a progress file) back; variants not evaluated yet have NaN Dice."""
    try:
        f = open_h5(path)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"cannot read scan {path}: {exc}") from exc
    with f:
        if attr_str(f, "kind") != KIND:
            raise UserError(f"{path} is not a scan (kind {attr_str(f, 'kind') or 'missing'!r})")
        g = f["variants"]
        index = g["index"][()]
        variants = [
            Variant(
                layer,
                kind,
                float(alpha),
                tuple(keys.split(",")) if keys else (),
                None if int(i) < 0 else int(i),
                tuple(mods.split("+")) if mods else (),
            )
            for layer, i, kind, alpha, keys, mods in zip(
                read_strings(g["layer"]),
                index,
                read_strings(g["kind"]),
                g["alpha"][()],
                read_strings(g["keys"]),
                read_strings(g["modules"]),
            )
        ]
        return ScanResult(
            name=name or path.name.split(".h5")[0],
            recipient=attr_str(f, "recipient"),
            donor=attr_str(f, "donor"),
            data=attr_str(f, "data"),
            classes=get_json(f, "classes", []),
            present=get_json(f, "present", []),
            subjects=read_strings(f["subjects"]),
            baseline=f["baseline/dice"][()],
            variants=variants,
            dice=g["dice"][()],
            precision=attr_str(f, "precision"),
            device=attr_str(f, "device"),
            engine=attr_str(f, "engine"),
            seconds=float(f.attrs.get("seconds", 0.0)),
            options=get_json(f, "options", {}),
            recalibrated_baseline=f["recalibrated/baseline"][()] if "recalibrated/baseline" in f else None,
            recalibrated=f["recalibrated/dice"][()] if "recalibrated/dice" in f else None,
            confirmed=g["confirmed"][()] if "confirmed" in g else None,
            fast_baseline=f["fast/baseline"][()] if "fast/baseline" in f else None,
            fast_dice=f["fast/dice"][()] if "fast/dice" in f else None,
        )


def load_scan(lab: Lab, ref: str) -> ScanResult:
    """A finished scan by id."""
    entry = lab.resolve(ref, "scans")
    return read_scan(entry.path, entry.id)
