"""What the Experiment view shows, arranged from the engine's `Experiment` (engine/grids/experiment.py).

The table is the paper's Table 3 as the engine computes it (`Experiment.table()`: mean and sample
std over seeds, the seed-paired difference to random initialisation with its 95% t interval);
this module only formats and colours those numbers. Cells are three lines (mean, ± std,
difference) so five Dice columns fit 80 columns, like `reuse-console show`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rich.text import Text

from .sparks import axis_ruler, bar, cell_width, spark_line

FIXED = ("source", "mode", "n", "s")  # n: training subjects, s: finished seeds


def short(value: float, digits: int = 3, sign: bool = False) -> str:
    """`0.812`, `±.013`-style text without the leading zero of a magnitude below 1 ('-' if missing)."""
    if not math.isfinite(value):
        return "-"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return text.replace("0.", ".", 1) if abs(value) < 1 else text


def diff_style(diff: float, significant: bool) -> str:
    """Colour of a difference to random init: green above, red below; brighter the larger it is,
    bold when its 95% interval excludes 0."""
    if not math.isfinite(diff):
        return "dim"
    size = abs(diff)
    colour = "green" if diff > 0 else "red"
    if size < 0.01:
        colour = "dim " + colour
    elif size >= 0.05:
        colour = "bright_" + colour
    return colour + (" bold" if significant else "")


@dataclass(frozen=True)
class ExpRow:
    """One table row: its key, labels, and per column mean/std/diff/interval from the engine."""

    key: str
    source: str
    mode: str
    subjects: str
    seeds: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    diff: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    significant: tuple[bool, ...]
    checkpoints: tuple[tuple[str, int, float], ...]  # (checkpoint, seed, fg Dice) of each cell


@dataclass(frozen=True)
class ExperimentView:
    """Everything the screen shows, built in the worker."""

    name: str
    title: Text
    columns: tuple[str, ...]
    rows: tuple[ExpRow, ...]
    legend: str
    rmse_kinds: tuple[str, ...] = ()
    rmse_axis: tuple[str, ...] = ()
    rmse: dict[str, tuple[tuple[float | None, ...], ...]] | None = None  # kind -> per row, per layer
    status: str = "complete"  # "running" while the grid still trains cells (the view re-reads it)


def row_key(source: str, mode: str, subjects: Any) -> str:
    return f"{source}|{mode}|{subjects}"


def build_view(exp: Any) -> ExperimentView:
    """The view of an engine `Experiment`: its table rows, and the RMSE to the reference per row."""
    cols = exp.columns
    idx = [c for c, p in enumerate(exp.present) if p] + [len(exp.classes)]
    means = exp.cell_means()
    rows: list[ExpRow] = []
    members: dict[str, list[int]] = {}
    for i, cell in enumerate(exp.cells):
        members.setdefault(row_key(cell.source, cell.mode, cell.subjects), []).append(i)
    for r in exp.table():
        key = row_key(r.source, r.mode, r.subjects)
        nan = np.full(len(r.mean), np.nan)
        low = r.low if r.low is not None else nan
        high = r.high if r.high is not None else nan
        cells = tuple((exp.cells[i].checkpoint, exp.cells[i].seed, float(means[i, -1])) for i in members.get(key, []))
        rows.append(
            ExpRow(
                key,
                r.source,
                r.mode,
                "all" if r.subjects is None else str(r.subjects),
                r.seeds,
                tuple(float(r.mean[i]) for i in idx),
                tuple(float(r.std[i]) for i in idx),
                tuple(float(r.diff[i]) for i in idx),
                tuple(float(low[i]) for i in idx),
                tuple(float(high[i]) for i in idx),
                tuple(bool(r.significant[i]) for i in idx),
                cells,
            )
        )
    done = sum(c.done for c in exp.cells)
    title = Text.assemble(
        ("experiment ", "dim"),
        (exp.name, "bold"),
        f"  Dice on {exp.target}",
        (f"  {len(exp.subjects)} val subjects  {done}/{len(exp.cells)} cells  {exp.status}", "dim"),
    )
    legend = (
        f"mean, ± std over seeds, (difference to {exp.random_source}, paired by seed; *: 95% interval excludes 0)"
        if exp.random_source
        else "mean and ± std over seeds (no random-init row to compare with)"
    )
    labels = tuple({"background": "bg", "fg": "mean fg"}.get(c, c) for c in cols)  # as `show` heads them
    view = ExperimentView(exp.name, title, labels, tuple(rows), legend, status=exp.status)
    if exp.rmse is None or not len(exp.cells):
        return view
    numbered = [li for li, n in enumerate(exp.rmse_index) if n is not None]
    axis = tuple(exp.rmse_layers[li] for li in numbered)
    per_kind: dict[str, tuple[tuple[float | None, ...], ...]] = {}
    for ki, kind in enumerate(exp.rmse_kinds):
        series: list[tuple[float | None, ...]] = []
        for row in rows:
            done_cells = [i for i in members.get(row.key, []) if exp.cells[i].done]
            if not done_cells:
                series.append(tuple(None for _ in numbered))
                continue
            with np.errstate(all="ignore"):  # the figure's value per row: mean over its finished seeds
                values = np.nanmean(exp.rmse[done_cells][:, numbered, ki], axis=0)
            series.append(tuple(float(v) if math.isfinite(v) else None for v in values))
        if any(v is not None for s in series for v in s):
            per_kind[kind] = tuple(series)
    return replace(view, rmse_kinds=tuple(per_kind), rmse_axis=axis, rmse=per_kind)


def cell_lines(view: ExperimentView) -> tuple[bool, bool]:
    """Whether the table's cells need the ± std line (2+ seeds somewhere) and the difference line."""
    has_std = any(math.isfinite(v) for r in view.rows for v in r.std)
    has_diff = any(math.isfinite(v) for r in view.rows for v in r.diff)
    return has_std, has_diff


def table_cells(row: ExpRow, has_std: bool = True, has_diff: bool = True) -> list[Text]:
    """The row's DataTable cells: labels, then per column up to three lines: mean, ± std, (diff)."""
    cells = [Text(row.source, style="bold"), Text(row.mode), Text(row.subjects), Text(str(row.seeds))]
    for mean, std, diff, sig in zip(row.mean, row.std, row.diff, row.significant):
        text = Text(f"{mean:.3f}" if math.isfinite(mean) else "-", justify="right")
        if has_std:
            text.append("\n" + (f"±{short(std)}" if math.isfinite(std) else ""), style="dim")
        if has_diff:
            text.append("\n")
            if math.isfinite(diff):
                text.append(f"({short(diff, sign=True)}{'*' if sig else ''})", style=diff_style(diff, sig))
        cells.append(text)
    return cells


def row_detail(row: ExpRow, columns: tuple[str, ...]) -> Text:
    """The selected row's difference intervals and its cells (what Enter opens)."""
    text = Text.assemble((f"{row.source} {row.mode} n={row.subjects}  ", "bold"))
    intervals = [
        f"{c} [{short(lo, sign=True)}, {short(hi, sign=True)}]"
        for c, lo, hi in zip(columns, row.low, row.high)
        if math.isfinite(lo) and math.isfinite(hi)
    ]
    text.append("95% CI of diff: " + "  ".join(intervals) if intervals else "no interval (under 2 paired seeds)")
    text.append(f"\n{len(row.checkpoints)} cell(s): Enter opens a checkpoint's layers", style="dim")
    return text


def dice_chart(view: ExperimentView, width: int) -> list[Text]:
    """Per column (class), one bar per row: Dice on 0..1, the row's label and value beside it."""
    label_w = min(24, max(len(_label(r)) for r in view.rows) + 1) if view.rows else 10
    bar_w = max(10, width - label_w - 8)
    lines: list[Text] = []
    for c, column in enumerate(view.columns):
        lines.append(Text(f"{column}: Dice per row (0 to 1)", style="bold"))
        for row in view.rows:
            line = Text(_label(row)[: label_w - 1].ljust(label_w), no_wrap=True)
            value = row.mean[c]
            style = diff_style(row.diff[c], row.significant[c]) if math.isfinite(row.diff[c]) else "cyan"
            line.append_text(bar(value if math.isfinite(value) else None, bar_w, style.replace("dim ", "")))
            line.append(" -" if not math.isfinite(value) else f" {value:.3f}")
            lines.append(line)
        lines.append(Text(""))
    return lines


def rmse_chart(view: ExperimentView, width: int) -> list[Text]:
    """Figures 13/14: RMSE of each row's models to the reference per layer, one panel per kind."""
    if view.rmse is None:
        return [Text("this grid names no reference model, so it has no RMSE figure ([study] reference)", style="dim")]
    label_w = min(24, max(len(_label(r)) for r in view.rows) + 1) if view.rows else 10
    cell = cell_width(len(view.rmse_axis), width, label_w)
    lines = [Text("RMSE to the reference per layer, mean over seeds; each kind on its own scale", style="dim")]
    for kind in view.rmse_kinds:
        series = view.rmse[kind]
        top = max((v for s in series for v in s if v is not None), default=0.0)
        lines.append(Text(f"{kind}  (max {top:.3g})", style="bold"))
        for row, values in zip(view.rows, series):
            lines.append(
                spark_line(_label(row), values, top, label_width=label_w, cell=cell, style_of=lambda _: "cyan")
            )
        lines.append(axis_ruler(view.rmse_axis, label_w, cell))
    return lines


def _label(row: ExpRow) -> str:
    return f"{row.source} {row.mode} n={row.subjects}"
