"""The Scan view's overlay: several scans of one recipient as one layer x kind grid and charts.

The table shows the open scan (its first line); a cell's detail names every line's Dice there
(donor, init, random, recalibrated, pair sets with their range), and the charts draw one row per
line on a shared axis per kind, with a `spread` row under a pair set (its band, highest minus
lowest pair). The numbers are the engine's (engine/swaps/overlay.py); this module arranges them.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from reuse_console.engine.core.numbers import finite_or_none

from .charts import drop_style
from .scan_grid import Grid, Panel, Series, fitted_scale


def _value_text(mean: float, low: float, high: float, pairs: int) -> str:
    return f"{mean:.3f}" + (f" [{low:.3f}, {high:.3f}]" if pairs > 1 else "")


def overlay_grid(view: Any, title: str) -> Grid:
    """A Grid of `view` (an engine Overlay): cells from its first line, details and charts from all."""
    first = view.lines[0]
    cells: dict[tuple[str, str], tuple[str, str]] = {}
    details: dict[tuple[str, str], Text] = {}
    for layer in view.layers:
        for kind in view.kinds:
            own = view.at(0, layer, kind)
            if own is None:
                continue
            cells[(layer, kind)] = (f"{own[0]:.3f}", drop_style(first.baseline - own[0]))
            detail = Text.assemble((f"layer {layer} {kind}  ", "bold"))
            for i, line in enumerate(view.lines):
                found = view.at(i, layer, kind)
                if found is None:
                    continue
                detail.append(f"{line.label} ")
                detail.append(
                    _value_text(found[0], found[1], found[2], line.pairs), style=drop_style(line.baseline - found[0])
                )
                detail.append("  ")
            details[(layer, kind)] = detail
    numbered = [(li, n) for li, n in enumerate(view.index) if n is not None]
    axis = tuple(str(n) for _, n in numbered)
    panels = []
    for ki, kind in enumerate(view.kinds):
        rows = []
        for line in view.lines:
            values = tuple(finite_or_none(line.mean[ki, li]) for li, _ in numbered)
            if not any(v is not None for v in values):
                continue
            rows.append((line, values))
        if not rows:
            continue
        lo, hi = fitted_scale([v for _, vs in rows for v in vs], max(line.baseline for line, _ in rows))
        series = []
        for line, values in rows:
            series.append(Series(line.label, values, lo, hi, line.baseline, f"{line.baseline:.2f}→{lo:.2f}"))
            if line.pairs > 1:
                spread = tuple(finite_or_none(line.high[ki, li] - line.low[ki, li]) for li, _ in numbered)
                top = max([v for v in spread if v is not None] or [0.0]) or 1.0
                series.append(Series(" spread", spread, 0.0, top, None, f"max {top:.3f}", "ratio"))
        panels.append(Panel(f"{kind} swapped: foreground Dice by donor", tuple(series)))
    legend = (
        "cells: the open scan; detail: every line there ([lowest, highest] pair); charts: one axis per kind, "
        "`spread` rows: the band over pairs"
    )
    head = Text.assemble(("overlay ", "dim"), (title, "bold"), (f"  {len(view.lines)} lines", "dim"))
    head.append("  (v: back)", style="yellow")
    return Grid(
        title=head,
        rows=tuple(view.layers),
        columns=tuple(view.kinds),
        cells=cells,
        details=details,
        panels=tuple(panels),
        axis=axis,
        legend=legend,
        note="as a figure: reuse-console report "
        + " ".join(dict.fromkeys(n for line in view.lines for n in line.scans)),
    )
