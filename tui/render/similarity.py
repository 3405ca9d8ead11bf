"""A CKA comparison as rich tables within 80 columns: layers down, model pairs across.

Models are numbered in the title (1 = the first checkpoint given) so a pair's column is `1-2`.
Up to six pairs fit as linear and debiased columns side by side; more pairs (5+ models) give one
table of linear CKA and one of debiased CKA.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..output import fmt

SIDE_BY_SIDE = 6  # pairs whose two columns each still fit 80 columns


def _cell(value: float) -> str:
    text = fmt(float(value))
    if value != value:
        return text
    style = "red" if value < 0.5 else "yellow" if value < 0.8 else ""
    return f"[{style}]{text}[/{style}]" if style else text


def _table(sim: Any, columns: list[tuple[str, Any, int]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("layer", no_wrap=True)
    for head, _, _ in columns:
        table.add_column(head, justify="right", no_wrap=True)
    for li, layer in enumerate(sim.layers):
        table.add_row(layer, *(_cell(values[p, li]) for _, values, p in columns))
    return table


def render_similarity(sim: Any) -> RenderableType:
    """Linear and debiased CKA per layer for every pair of models."""
    unit = "slices" if sim.features == "pooled" else f"positions ({sim.pixels} per slice)"
    legend = ", ".join(f"{i + 1} = {m}" for i, m in enumerate(sim.models))
    head = Text(
        f"CKA on {sim.data} ({sim.split}, {sim.samples} {unit}, {sim.features} features at {sim.size} px): {legend}"
    )
    note = Text(
        "lin: linear CKA; deb: debiased CKA (unbiased HSIC); 1 = the same up to rotation and scale "
        "(yellow < 0.8, red < 0.5)",
        style="dim",
    )
    labels = [f"{a + 1}-{b + 1}" for a, b in sim.pairs]
    if len(sim.pairs) <= SIDE_BY_SIDE:
        columns = []
        for p, label in enumerate(labels):
            columns += [(f"{label}\nlin", sim.linear, p), (f"{label}\ndeb", sim.debiased, p)]
        return Group(head, _table(sim, columns), note)
    linear = _table(sim, [(label, sim.linear, p) for p, label in enumerate(labels)])
    debiased = _table(sim, [(label, sim.debiased, p) for p, label in enumerate(labels)])
    return Group(head, Text("linear CKA"), linear, Text("debiased CKA"), debiased, note)
