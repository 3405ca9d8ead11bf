"""What the Comparison view shows of an RMSE comparison of N models (engine/compare/rmse.py).

Two layouts of the engine's (P, L, K) arrays: one pair (rows layers, columns kinds) or the
matrix of every pair for one kind (rows layers, columns pairs `1-2`, `1-3` ...). Cells show the
RMSE relative to the first model's RMS (the absolute RMSE is on the line below the table);
sparklines draw it per layer, one line per kind (pair) or per pair (matrix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from ..widgets.charts import ratio_style
from .sparks import axis_ruler, cell_width, spark_line


@dataclass(frozen=True)
class Layout:
    """A table (columns, rows of (layer, cells)) and its sparklines, for one choice."""

    title: Text
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Text, ...]], ...]
    details: dict[tuple[str, str], Text]
    sparks: tuple[tuple[str, tuple[float | None, ...]], ...]
    axis: tuple[str, ...]


def _value(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _cell(rel: float | None, rmse: float | None) -> Text:
    if rmse is None:
        return Text("")
    return Text(f"{rel:.3f}" if rel is not None else f"{rmse:.3g}", style=ratio_style(rel), justify="right")


def legend(comp: Any) -> str:
    return "  ".join(f"{i + 1}={m}" for i, m in enumerate(comp.models))


def _numbered(comp: Any) -> list[int]:
    return [li for li, n in enumerate(comp.index) if n is not None]


def pair_layout(comp: Any, p: int) -> Layout:
    """Pair `p`: layers x kinds of relative RMSE; a sparkline per kind."""
    a, b = comp.pairs[p]
    details: dict[tuple[str, str], Text] = {}
    rows = []
    for li, layer in enumerate(comp.layers):
        cells = []
        for ki, kind in enumerate(comp.kinds):
            rmse, rel = _value(comp.rmse[p, li, ki]), _value(comp.relative[p, li, ki])
            cells.append(_cell(rel, rmse))
            if rmse is not None:
                details[(layer, kind)] = _detail(comp, a, p, li, ki)
        rows.append((layer, tuple(cells)))
    numbered = _numbered(comp)
    sparks = tuple(
        (kind, tuple(_value(comp.relative[p, li, ki]) for li in numbered)) for ki, kind in enumerate(comp.kinds)
    )
    title = Text.assemble(
        ("pair ", "dim"),
        (f"{comp.models[a]} ↔ {comp.models[b]}", "bold"),
        (f"  ({p + 1} of {len(comp.pairs)}; p: next pair, m: matrix)", "dim"),
    )
    return Layout(title, tuple(comp.kinds), tuple(rows), details, sparks, tuple(comp.layers[li] for li in numbered))


def matrix_layout(comp: Any, k: int) -> Layout:
    """Kind `k` for every pair: layers x pairs of relative RMSE; a sparkline per pair."""
    kind = comp.kinds[k]
    labels = tuple(f"{a + 1}-{b + 1}" for a, b in comp.pairs)
    details: dict[tuple[str, str], Text] = {}
    rows = []
    for li, layer in enumerate(comp.layers):
        cells = []
        for p, (a, _) in enumerate(comp.pairs):
            rmse, rel = _value(comp.rmse[p, li, k]), _value(comp.relative[p, li, k])
            cells.append(_cell(rel, rmse))
            if rmse is not None:
                details[(layer, labels[p])] = _detail(comp, a, p, li, k)
        rows.append((layer, tuple(cells)))
    numbered = _numbered(comp)
    sparks = tuple((label, tuple(_value(comp.relative[p, li, k]) for li in numbered)) for p, label in enumerate(labels))
    title = Text.assemble(
        ("matrix ", "dim"),
        (f"{kind}", "bold"),
        (f" of every pair: {legend(comp)}  (k: next kind, m: pair)", "dim"),
    )
    return Layout(title, labels, tuple(rows), details, sparks, tuple(comp.layers[li] for li in numbered))


def _detail(comp: Any, a: int, p: int, li: int, ki: int) -> Text:
    x, y = comp.pairs[p]
    rel = _value(comp.relative[p, li, ki])
    return Text.assemble(
        (f"layer {comp.layers[li]} {comp.kinds[ki]}  {comp.models[x]} ↔ {comp.models[y]}  ", "bold"),
        f"RMSE {comp.rmse[p, li, ki]:.4g}  RMS of {comp.models[a]} {comp.rms[a, li, ki]:.4g}  ",
        (f"relative {rel:.4g}" if rel is not None else "relative -", ratio_style(rel)),
    )


def spark_lines(layout: Layout, width: int) -> list[Text]:
    """One sparkline per kind or pair on a shared 0..max scale, with the layer axis under them."""
    if not layout.axis:
        return [Text("no numbered layers to draw", style="dim")]
    label_w = max(6, max(len(label) for label, _ in layout.sparks) + 1)
    cell = cell_width(len(layout.axis), width, label_w)
    top = max((v for _, s in layout.sparks for v in s if v is not None), default=1.0)
    lines = [Text(f"relative RMSE per layer, 0 to {top:.3g}", style="dim")]
    for label, values in layout.sparks:
        finite = [v for v in values if v is not None]
        note = f"max {max(finite):.3g}" if finite else "-"
        lines.append(spark_line(label, values, top, label_width=label_w, cell=cell, note=note, style_of=ratio_style))
    lines.append(axis_ruler(layout.axis, label_w, cell))
    return lines
