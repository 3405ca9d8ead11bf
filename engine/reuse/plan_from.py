"""`plan --scan SCAN --from MEASURE --threshold X`: a reuse plan from one predictor alone, beside the swaps'.

The paper's shortcut is to call a tensor reusable when its RMSE to the ideal one is small, without
swapping it. This makes that plan (measure <= threshold; for CKA, a similarity, >= threshold)
for the scan's recipient and donor, and says how often it agrees with the plan the scan's
swaps give (drop <= max_dice_drop) on the tensors the scan swapped. Tensors the scan did not swap
are decided by the measure alone and left out of the agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from reuse_console.engine.core.events import Reporter, silent
from reuse_console.engine.reuse.plans import TOLERANCE, ReusePlan, infer_plan, save_plan, scan_dice_drops, universe
from reuse_console.engine.reuse.predict_measures import (
    HIGH_MEANS_SIMILAR,
    MEASURES,
    NEEDS_DATA,
    load_pair,
    tensor_measures,
)
from reuse_console.engine.swaps.scan_store import load_scan
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


@dataclass(frozen=True)
class Agreement:
    """How the predictor's plan and the swaps' plan decide the tensors the scan swapped."""

    tensors: int
    both: int  # reusable in both plans
    measure_only: int  # the measure says reusable, the swap costs more than the threshold
    swaps_only: int  # the swap is harmless, the measure says not reusable
    neither: int

    @property
    def share(self) -> float:
        return (self.both + self.neither) / self.tensors if self.tensors else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "share": round(self.share, 4) if self.tensors else None}


def agreement(measured: ReusePlan, swapped: ReusePlan, keys: set[str]) -> Agreement:
    by_swap = {t.key: t.reusable for t in swapped.tensors}
    pairs = [(t.reusable, by_swap[t.key]) for t in measured.tensors if t.key in keys]
    return Agreement(
        len(pairs),
        sum(a and b for a, b in pairs),
        sum(a and not b for a, b in pairs),
        sum(b and not a for a, b in pairs),
        sum(not a and not b for a, b in pairs),
    )


def is_reusable(measure: str, value: float | None, threshold: float) -> bool:
    """The measure's rule: small difference (or, for CKA, high similarity) is reusable; none is not."""
    if value is None or not np.isfinite(value):
        return False
    if measure in HIGH_MEANS_SIMILAR:
        return value >= threshold - TOLERANCE
    return value <= threshold + TOLERANCE


def plan_from_measure(
    lab: Lab,
    scan_ref: str,
    measure: str,
    threshold: float,
    *,
    max_dice_drop: float = 0.05,
    name: str | None = None,
    device: str = "cpu",
    report: Reporter = silent,
) -> tuple[ReusePlan, Agreement]:
    """Store the plan `measure` gives at `threshold` for scan `scan_ref`'s pair; return it and its agreement."""
    if measure not in MEASURES:
        raise UserError(f"unknown --from {measure!r}: use one of {', '.join(MEASURES)}")
    if not np.isfinite(threshold):
        raise UserError(f"--threshold must be a number (got {threshold})")
    scan = load_scan(lab, scan_ref)
    pair = load_pair(lab, scan, with_data=measure in NEEDS_DATA)
    measured, notes = tensor_measures(pair, [measure], device=device, report=report)
    if measure not in measured:
        raise UserError(notes[0] if notes else f"{measure} gives no value for {scan.recipient}'s tensors")
    values = measured[measure]
    tensors = [
        replace(
            t,
            reusable=is_reusable(measure, values.get(t.key), threshold),
            rmse=values.get(t.key) if measure == "rmse" else None,
        )
        for t in universe(pair.index)
    ]
    swapped = infer_plan(scan, max_dice_drop=max_dice_drop, layers=pair.index, name="swaps")
    drops = scan_dice_drops(scan)
    tensors = [replace(t, dice_drop=drops.get(t.key)) for t in tensors]
    base = f"plan-{measure}-{scan.name}"[:100]
    plan = ReusePlan(
        name=name or base,
        arch=pair.arch,
        tensors=tensors,
        criteria={"from": measure, "threshold": threshold, "reusable_when": _rule(measure), "max_dice_drop": None},
        provenance={"source": "predictor", "scan": scan.name, "recipient": scan.recipient, "donor": scan.donor},
    )
    agree = agreement(plan, swapped, set(drops))
    plan.provenance["agreement"] = {"max_dice_drop": max_dice_drop, **agree.to_json()}
    if name is None:
        plan.name = lab.unique_name("plans", base)
    save_plan(lab, plan)
    return plan, agree


def _rule(measure: str) -> str:
    return f"{measure} >= threshold" if measure in HIGH_MEANS_SIMILAR else f"{measure} <= threshold"
