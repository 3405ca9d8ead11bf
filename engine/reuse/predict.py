"""`reuse-console predict SCAN`: does a difference measure predict a swap's Dice drop?

The paper infers reusable tensors from their RMSE and confirms them with swaps. Here that is a
measured claim: for every tensor the scan swapped alone (alpha 1), its measured drop (the worst
foreground Dice drop, as plans judge it) is paired with each measure of engine/reuse/predict_measures.py,
and per kind and over all tensors the table gives
- Spearman's rho between measure and drop, with a bootstrap 95% interval (predict_stats.py).
  For a difference measure a predictor of harm has rho > 0; for CKA (a similarity) rho < 0.
- the AUC for "drop <= max_dice_drop" (the plan's reusable): the chance that a reusable tensor
  looks closer to the recipient than a non-reusable one (small difference, or high CKA). 0.5 is
  chance, 1 a perfect threshold rule exists.
Stored in the lab (predict_store.py) beside the comparisons.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.reuse.plans import scan_dice_drops
from reuse_console.engine.reuse.predict_measures import (
    HIGH_MEANS_SIMILAR,
    MEASURES,
    NEEDS_DATA,
    load_pair,
    parse_measures,
    tensor_measures,
)
from reuse_console.engine.reuse.predict_stats import RESAMPLES, auc, bootstrap_interval, spearman
from reuse_console.store.errors import UserError

ALL = "all"


@dataclass(frozen=True)
class TensorRow:
    """One swapped tensor: where it is, its measured drop, and every measure's value (NaN: none)."""

    key: str
    layer: str
    index: int | None
    kind: str
    drop: float
    values: tuple[float, ...]


@dataclass(frozen=True)
class StatRow:
    """How well one measure ranks the drops of one kind (or of all tensors)."""

    measure: str
    group: str  # a kind, or "all"
    n: int
    reusable: int  # tensors with drop <= the threshold
    rho: float
    low: float
    high: float
    auc: float

    def to_json(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "group": self.group,
            "n": self.n,
            "reusable": self.reusable,
            "rho": finite_or_none(self.rho),
            "rho_low": finite_or_none(self.low),
            "rho_high": finite_or_none(self.high),
            "auc": finite_or_none(self.auc),
        }


@dataclass
class Predictor:
    """The predictor table of one scan, with the per-tensor evidence it was computed from."""

    scan: str
    recipient: str
    donor: str
    data: str
    max_dice_drop: float
    measures: list[str]
    tensors: list[TensorRow]
    rows: list[StatRow]
    resamples: int = RESAMPLES
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    name: str = ""
    recalibrated: bool = False  # drops from the scan's recalibrated Dice (norm statistics re-estimated)

    def row(self, measure: str, group: str = ALL) -> StatRow | None:
        return next((r for r in self.rows if r.measure == measure and r.group == group), None)

    def best(self) -> StatRow | None:
        """The measure with the highest AUC over all tensors (None when none is defined)."""
        overall = [r for r in self.rows if r.group == ALL and np.isfinite(r.auc)]
        return max(overall, key=lambda r: r.auc) if overall else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measure": "predictor",
            "scan": self.scan,
            "recipient": self.recipient,
            "donor": self.donor,
            "data": self.data,
            "max_dice_drop": self.max_dice_drop,
            "recalibrated": self.recalibrated,
            "resamples": self.resamples,
            "seed": self.seed,
            "measures": list(self.measures),
            "notes": list(self.notes),
            "rows": [r.to_json() for r in self.rows],
            "tensors": [
                {
                    "key": t.key,
                    "layer": t.index if t.index is not None else t.layer,
                    "kind": t.kind,
                    "drop": t.drop,
                    **{m: finite_or_none(v) for m, v in zip(self.measures, t.values)},
                }
                for t in self.tensors
            ],
        }


def similarity_score(measure: str, values: np.ndarray) -> np.ndarray:
    """Values turned so that larger means "closer to the recipient" (what the AUC ranks by)."""
    return values if measure in HIGH_MEANS_SIMILAR else -values


def stat_rows(
    measures: Sequence[str],
    tensors: Sequence[TensorRow],
    max_dice_drop: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[StatRow]:
    """Spearman's rho (bootstrap interval) and AUC per measure, per kind present and over all tensors."""
    kinds = [k for k in KINDS if any(t.kind == k for t in tensors)]
    drops = np.array([t.drop for t in tensors], dtype=np.float64)
    kind_of = np.array([t.kind for t in tensors])
    rows: list[StatRow] = []
    for m, name in enumerate(measures):
        values = np.array([t.values[m] for t in tensors], dtype=np.float64)
        for group in [*kinds, ALL]:
            chosen = np.isfinite(values) & ((kind_of == group) if group != ALL else True)
            x, y = values[chosen], drops[chosen]
            if not len(x):
                continue
            positive = y <= max_dice_drop + 1e-9
            low, high = bootstrap_interval(x, y, resamples=resamples, seed=seed)
            rows.append(
                StatRow(
                    name,
                    group,
                    int(len(x)),
                    int(positive.sum()),
                    spearman(x, y),
                    low,
                    high,
                    auc(similarity_score(name, x), positive),
                )
            )
    return rows


def recalibrated_view(scan: Any) -> Any:
    """The scan with its recalibrated Dice (baseline and variants, `scan --recalibrate`) in place of
    the raw, so every drop compares a recalibrated swap with the recalibrated recipient."""
    if scan.recalibrated is None or scan.recalibrated_baseline is None:
        raise UserError(
            f"scan {scan.name!r} was not scanned with --recalibrate: predict --recalibrated needs its "
            "recalibrated Dice (rescan with --recalibrate N)"
        )
    return replace(scan, baseline=scan.recalibrated_baseline, dice=scan.recalibrated)


def tensor_rows(
    scan: Any, index: Any, measured: dict[str, dict[str, float]], measures: Sequence[str]
) -> list[TensorRow]:
    """One row per single-tensor full swap of the scan, in layer and kind order."""
    drops = scan_dice_drops(scan)
    rows = []
    for layer in index.layers:
        for kind in layer.kinds:
            key = layer.key(kind)
            if key in drops:
                values = tuple(float(measured.get(m, {}).get(key, np.nan)) for m in measures)
                rows.append(TensorRow(key, layer.name, layer.index, kind, drops[key], values))
    return rows


def predict_scan(
    lab: Any,
    scan: Any,
    *,
    measures: str | Sequence[str] = MEASURES,
    max_dice_drop: float = 0.05,
    resamples: int = RESAMPLES,
    seed: int = 0,
    device: str = "cpu",
    batch: int = 32,
    recalibrated: bool = False,
    report: Reporter = silent,
) -> Predictor:
    """The predictor table of `scan` (a ScanResult), not stored; with `recalibrated`, of the drops
    the scan measured after re-estimating the norm statistics (AdaBN)."""
    if not (np.isfinite(max_dice_drop) and max_dice_drop >= 0):
        raise UserError(f"--max-dice-drop must be a number >= 0 (got {max_dice_drop})")
    if resamples < 0:
        raise UserError(f"--resamples must be >= 0 (got {resamples})")
    start = time.perf_counter()
    chosen = parse_measures(measures)
    measured_scan = recalibrated_view(scan) if recalibrated else scan
    swapped = len(scan_dice_drops(measured_scan))
    if swapped < 3:
        raise UserError(f"scan {scan.name!r} swapped {swapped} single tensors: a rank correlation needs 3 or more")
    pair = load_pair(lab, scan, batch=batch, with_data=bool(NEEDS_DATA & set(chosen)))
    measured, notes = tensor_measures(pair, chosen, device=device, report=report)
    kept = [m for m in chosen if m in measured]
    tensors = tensor_rows(measured_scan, pair.index, measured, kept)
    report(Message(f"{len(tensors)} tensors, {len(kept)} measures, {resamples} bootstrap resamples"))
    rows = stat_rows(kept, tensors, max_dice_drop, resamples=resamples, seed=seed)
    return Predictor(
        scan.name,
        scan.recipient,
        scan.donor,
        scan.data,
        float(max_dice_drop),
        kept,
        tensors,
        rows,
        resamples,
        seed,
        notes,
        time.perf_counter() - start,
        recalibrated=bool(recalibrated),
    )
