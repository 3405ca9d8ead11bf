"""The Swap lab's tables: the recipient's layers with ticked kinds, and Dice of one outcome."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from .charts import drop_style


class LayerTable(DataTable):
    """The recipient's layers; Enter evaluates the ticked set instead of selecting a row."""

    BINDINGS: ClassVar = [Binding("enter", "screen.evaluate", "Evaluate", id="swap.evaluate")]


def dice_table(outcome: Any, baseline: Any) -> RenderableType:
    """Dice per class: baseline, swapped, and the change, coloured by how much Dice dropped; with
    recalibration on, the same again below for the recalibrated baseline and swap (a second
    narrow table keeps both readable at 80 columns)."""
    rows = [(c, baseline.dice.get(c), outcome.dice.get(c)) for c in outcome.dice]
    rows.append(("mean fg", baseline.dice_fg, outcome.dice_fg))
    raw = _dice_rows(rows)
    recal = outcome.recalibrated
    if recal is None:
        return raw
    before, after = recal.baseline.by_class(), recal.result.by_class()
    recal_rows = [(c, before.get(c), after.get(c)) for c in outcome.dice]
    recal_rows.append(("mean fg", recal.baseline.dice_fg, recal.result.dice_fg))
    note = Text(f"recalibrated: norm statistics re-estimated on {recal.batches} training batches", style="dim")
    return Group(raw, Text(""), note, _dice_rows(recal_rows))


def _dice_rows(rows: list[tuple[str, float | None, float | None]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("class", "left"),
        ("baseline", "right"),
        ("swapped", "right"),
        ("Δ", "right"),
    )
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for name, base, value in rows:
        if value is None or base is None:
            table.add_row(name, "absent", "absent", "")
            continue
        delta = value - base
        table.add_row(name, f"{base:.4f}", f"{value:.4f}", Text(f"{delta:+.4f}", style=drop_style(-delta)))
    return table


def subject_table(outcome: Any) -> Table:
    """Dice per validation subject and class of one outcome (the means above come from these)."""
    result = outcome.result
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    table.add_column("subject")
    shown = [c for c, p in enumerate(result.present) if p]
    for c in shown:
        table.add_column(result.classes[c], justify="right")
    for name, row in zip(result.subjects, result.per_subject):
        table.add_row(name, *(f"{row[c]:.3f}" for c in shown))
    return table
