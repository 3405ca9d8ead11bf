"""What the Plan view shows: a reuse plan's layer x kind map, its text form and shares.

The plan is the engine's `ReusePlan` (engine/reuse/plans.py); an edit is the set of (layer, kind)
the user marked reusable, and the text form and shares of the edited plan are the engine's
(`with_reusable`, `format_not_reusable`, `tensor_share`, `element_share`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.text import Text

KIND_ORDER = ("RM", "RV", "RW", "RB", "W", "B")


@dataclass(frozen=True)
class PlanMap:
    """The map's rows (layers), columns (kinds) and each tensor's evidence."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    evidence: str  # "dice drop" | "rmse" | ""
    values: dict[tuple[str, str], float | None]  # (layer, kind) -> the number that decided it
    original: frozenset[tuple[str, str]]  # reusable as stored


def plan_map(plan: Any) -> PlanMap:
    kinds = tuple(k for k in KIND_ORDER if any(t.kind == k for t in plan.tensors))
    kinds += tuple(dict.fromkeys(t.kind for t in plan.tensors if t.kind not in KIND_ORDER))
    evidence = (
        "dice drop"
        if any(t.dice_drop is not None for t in plan.tensors)
        else "rmse"
        if any(t.rmse is not None for t in plan.tensors)
        else ""
    )
    values = {(t.layer, t.kind): (t.dice_drop if evidence == "dice drop" else t.rmse) for t in plan.tensors}
    return PlanMap(
        tuple(dict.fromkeys(t.layer for t in plan.tensors)),
        kinds,
        evidence,
        values,
        frozenset((t.layer, t.kind) for t in plan.tensors if t.reusable),
    )


def map_cell(pm: PlanMap, layer: str, kind: str, reusable: set[tuple[str, str]]) -> Text:
    """`0.012 ✓` green when reused, `0.231 x` red when not; edited cells underlined; blank: no tensor."""
    if (layer, kind) not in pm.values:
        return Text("")
    value = pm.values[(layer, kind)]
    number = "-" if value is None or not math.isfinite(value) else f"{0.0 if abs(value) < 5e-4 else value:.3f}"
    on = (layer, kind) in reusable
    edited = on != ((layer, kind) in pm.original)
    style = ("green" if on else "red") + (" underline bold" if edited else "")
    return Text(f"{number} {'✓' if on else 'x'}", style=style, justify="right")


def plan_head(plan: Any, evidence: str) -> Text:
    """Name, architecture and models; then the rule that decided it and what the numbers are."""
    prov, crit = plan.provenance or {}, plan.criteria or {}
    text = Text.assemble(("plan ", "dim"), (plan.name, "bold"), (f"  {plan.arch}", ""))
    if prov.get("recipient") or prov.get("donor"):
        text.append(f"  {prov.get('recipient', '?')} ← {prov.get('donor', '?')}", style="dim")
    rules = []
    if crit.get("max_dice_drop") is not None:
        rules.append(f"Dice drop ≤ {crit['max_dice_drop']:g}")
    if crit.get("max_rmse") is not None:
        rules.append(f"RMSE ≤ {crit['max_rmse']:g}")
    second = "reusable: " + f" {crit.get('combine', 'and')} ".join(rules) if rules else str(prov.get("source", ""))
    numbers = {"dice drop": "worst fg Dice drop", "rmse": "RMSE"}.get(evidence, "")
    if numbers:
        second += f"{'; ' if second else ''}numbers: {numbers}; ✓ reused, x not"
    text.append("\n" + second, style="dim")
    return text


def plan_summary(edited: Any, changed: int) -> Text:
    """The paper's text form and the shares of the (edited) plan."""
    from reuse_console.engine.reuse.plans import format_not_reusable

    reused = sum(t.reusable for t in edited.tensors)
    text = Text.assemble(("not reusable: ", "bold"), format_not_reusable(edited) or "(none)")
    text.append(
        f"\nreused {reused} of {len(edited.tensors)} tensors ({_pct(edited.tensor_share())}), "
        f"{_pct(edited.element_share())} of parameter elements"
    )
    if changed:
        text.append(f"  {changed} edited (underlined; s saves as a new plan)", style="yellow")
    return text


def _pct(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}%"
