"""A predictor table (`predict`) as rich tables within 80 columns.

The first table is over all swapped tensors: Spearman's rho between each measure and the Dice
drop with its bootstrap 95% interval, and the AUC for "reusable" (drop <= the threshold). The
second gives rho and AUC per kind, written without the leading zero so six kinds fit.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reuse_console.engine.models.layers import KINDS

from ..output import fmt

ALL = "all"  # the group of every tensor (engine/reuse/predict.py)


def _short(value: float, signed: bool = False) -> str:
    """0.52 -> ".52", -0.5 -> "-.50" (signed: "+.52"); NaN -> "-"."""
    if value != value:
        return "-"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text.replace("0.", ".", 1)


def _auc(value: float) -> str:
    text = fmt(value, 2)
    if value != value:
        return text
    style = "green" if value >= 0.8 else "yellow" if value >= 0.65 else ""
    return f"[{style}]{text}[/{style}]" if style else text


def overall_table(result: Any) -> Table:
    """Measure | n | rho | 95% interval | AUC, over all tensors."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    for col in ("measure", "n", "rho", "95% interval", "AUC"):
        table.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
    for measure in result.measures:
        row = result.row(measure, ALL)
        if row is None:
            continue
        interval = "-" if row.low != row.low else f"[{row.low:+.2f}, {row.high:+.2f}]"
        table.add_row(measure, str(row.n), fmt(row.rho, 2), interval, _auc(row.auc))
    return table


def kind_table(result: Any) -> Table | None:
    """Measure | one "rho AUC" cell per kind (None when the scan swapped one kind only)."""
    kinds = [k for k in KINDS if any(r.group == k for r in result.rows)]
    if len(kinds) < 2:
        return None
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("rho AUC", no_wrap=True)
    for kind in kinds:
        table.add_column(kind, justify="right", no_wrap=True)
    for measure in result.measures:
        cells = []
        for kind in kinds:
            row = result.row(measure, kind)
            cells.append("" if row is None else f"{_short(row.rho, True)} {_short(row.auc)}")
        if any(cells):
            table.add_row(measure, *cells)
    return table


def render_predictor(result: Any) -> RenderableType:
    """Both tables with a head naming the scan and a note on how to read them."""
    positives = result.row(result.measures[0], ALL) if result.measures else None
    reusable = f", {positives.reusable} reusable" if positives is not None else ""
    head = Text(
        f"Does a measure predict the {'recalibrated ' if getattr(result, 'recalibrated', False) else ''}"
        f"Dice drop of {result.scan} ({result.recipient} <- {result.donor}, "
        f"{len(result.tensors)} tensors{reusable} at drop <= {result.max_dice_drop:g})?"
    )
    note = Text(
        "rho: Spearman between measure and drop (a difference that predicts harm: > 0; CKA: < 0), bootstrap "
        f"95% interval over {result.resamples} resamples. AUC: chance that a reusable tensor looks closer to the "
        "recipient than a non-reusable one (0.5 = chance).",
        style="dim",
    )
    parts: list[RenderableType] = [head, overall_table(result)]
    per_kind = kind_table(result)
    if per_kind is not None:
        parts += [Text("per kind: rho and AUC"), per_kind]
    parts.append(note)
    parts += [Text(n, style="yellow") for n in result.notes]
    return Group(*parts)
