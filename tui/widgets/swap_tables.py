"""The Swap lab's tables: the recipient's layers with ticked kinds, and Dice of one outcome."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from .charts import drop_style


class LayerTable(DataTable):
    """The recipient's layers; Enter evaluates the ticked set instead of selecting a row."""

    BINDINGS: ClassVar = [Binding("enter", "screen.evaluate", "Evaluate", id="swap.evaluate")]


def dice_table(outcome: Any, baseline: Any) -> Table:
    """Dice per class: baseline, swapped, and the change, coloured by how much Dice dropped."""
    table = Table(box=None, pad_edge=False, header_style="bold", expand=False)
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("class", "left"),
        ("baseline", "right"),
        ("swapped", "right"),
        ("Δ", "right"),
    )
    recal = outcome.recalibrated
    if recal is not None:
        columns += (("recal base", "right"), ("recal", "right"), ("Δ", "right"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    rows = [(c, baseline.dice.get(c), outcome.dice.get(c), outcome.delta.get(c)) for c in outcome.dice]
    rows.append(("mean fg", baseline.dice_fg, outcome.dice_fg, outcome.dice_fg - baseline.dice_fg))
    recal_rows: list[tuple[float | None, float | None]] = []
    if recal is not None:
        before, after = recal.baseline.by_class(), recal.result.by_class()
        recal_rows = [(before.get(c), after.get(c)) for c in outcome.dice]
        recal_rows.append((recal.baseline.dice_fg, recal.result.dice_fg))
    for i, (name, base, value, delta) in enumerate(rows):
        if value is None:
            table.add_row(name, "absent", "absent", "", *(("", "", "") if recal is not None else ()))
            continue
        cells = [name, f"{base:.4f}", f"{value:.4f}", _change(delta)]
        if recal is not None:
            rb, ra = recal_rows[i]
            cells += [f"{rb:.4f}", f"{ra:.4f}", _change(ra - rb)] if rb is not None and ra is not None else ["", "", ""]
        table.add_row(*cells)
    return table


def _change(delta: float | None) -> Text:
    return Text(f"{delta:+.4f}", style=drop_style(None if delta is None else -delta))


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
