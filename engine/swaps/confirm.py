"""Exact decisions at low-precision speed: re-check in fp32 the variants a plan could flip on.

A bf16 scan runs several times faster on CPUs with AMX and on GPUs, but moves Dice by up to
~0.02, enough to move a tensor across a plan's threshold. A plan only asks, per tensor, whether
the worst foreground drop is at most its threshold; a variant whose bf16 drop is further than
MARGIN from every threshold gets the same answer in fp32 as long as the bf16 error stays under
MARGIN. So the scan re-evaluates, in exact fp32, the baseline and only the variants whose drop
lies within MARGIN of a threshold; those values replace the bf16 ones (which are kept beside
them), and the plan inferred from the confirmed scan is the fp32 scan's plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from reuse_console.engine.core.events import Message, Reporter
from reuse_console.engine.evaluation.metrics import nanmean
from reuse_console.engine.swaps.variants import ScanResult, Variant
from reuse_console.store.errors import UserError


@dataclass(frozen=True)
class Confirmation:
    """What `--confirm` asked: the window around each threshold that gets an fp32 re-evaluation."""

    margin: float
    thresholds: tuple[float, ...]

    @classmethod
    def parse(cls, margin: float | None, thresholds: str, precision: str) -> Confirmation | None:
        """`--confirm MARGIN --confirm-at 0.05,0.1` for a low-precision scan (None: no confirmation)."""
        if margin is None:
            return None
        if precision == "fp32":
            raise UserError("--confirm re-checks a bf16 or fp16 scan in fp32: this scan is fp32 already")
        if not 0 < margin <= 1:
            raise UserError(f"--confirm {margin:g}: give a Dice margin between 0 and 1, e.g. 0.02")
        try:
            values = tuple(float(t) for t in thresholds.split(",") if t.strip())
        except ValueError:
            raise UserError(
                f"--confirm-at {thresholds!r}: give Dice drops separated by commas, e.g. 0.05,0.1"
            ) from None
        if not values or any(not 0 <= t <= 1 for t in values):
            raise UserError(f"--confirm-at {thresholds!r}: give Dice drops between 0 and 1, e.g. 0.05,0.1")
        return cls(float(margin), values)

    def options(self) -> dict[str, object]:
        return {"confirm": self.margin, "confirm_at": list(self.thresholds)}


def worst_drops(baseline: np.ndarray, dice: np.ndarray, present: Sequence[bool]) -> np.ndarray:
    """(V,) worst foreground-class drop of each variant (the measure plans judge), NaN if unknown.

    baseline (S, C) and dice (V, S, C) per subject; means over subjects, background not judged."""
    fg = [c for c, p in enumerate(present) if p and c > 0] or [c for c, p in enumerate(present) if p]
    if dice.shape[0] == 0:
        return np.zeros(0)
    drops = nanmean(baseline, axis=0)[fg][None, :] - nanmean(dice, axis=1)[:, fg]  # NaN cells: --empty ignore
    return drops.max(axis=1)


def near_thresholds(drops: np.ndarray, confirmation: Confirmation) -> np.ndarray:
    """(V,) True where a variant's drop lies within the margin of any threshold (or is unknown)."""
    near = ~np.isfinite(drops)
    for t in confirmation.thresholds:
        near |= np.abs(drops - t) <= confirmation.margin
    return near


def confirm_in_fp32(
    result: ScanResult,
    variants: list[Variant],
    confirmation: Confirmation,
    present: Sequence[bool],
    evaluate_fp32: Callable[[list[Variant]], tuple[np.ndarray, np.ndarray]],
    report: Reporter,
) -> None:
    """Re-evaluate (`evaluate_fp32(chosen)` -> baseline, dice) the baseline and the variants whose
    drop is near a threshold; their fp32 values replace the low-precision ones, kept beside them."""
    near = near_thresholds(worst_drops(result.baseline, result.dice, present), confirmation)
    chosen = [v for v, n in zip(variants, near) if n]
    at = ", ".join(f"{t:g}" for t in confirmation.thresholds)
    report(
        Message(
            f"confirming in fp32: the baseline and {len(chosen)} of {len(variants)} variants "
            f"(drops within {confirmation.margin:g} of {at})"
        )
    )
    result.fast_baseline, result.fast_dice = result.baseline.copy(), result.dice.copy()
    base, dice = evaluate_fp32(chosen)
    result.baseline = base
    result.dice = result.dice.copy()
    if chosen:
        result.dice[near] = dice
    result.confirmed = near
