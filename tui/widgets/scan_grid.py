"""What the Scan view shows, built in a worker from engine results: a layer x kind grid and charts.

Three sources give the same shape: a scan (Dice after each single swap, coloured by the drop from
the baseline), a comparison (RMSE per layer and kind, for one pair of models) and a BN analysis
(scale ratio and shift change of each single BN-tensor swap). The numbers are the engine's; this
module only arranges and colours them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.text import Text

from reuse_console.engine.core.numbers import finite_or_none

from .charts import drop_style, level_rows, ratio_style


@dataclass(frozen=True)
class Series:
    """One chart row: a value per numbered layer (None where missing), on the scale lo..hi."""

    label: str
    values: tuple[float | None, ...]
    lo: float = 0.0
    hi: float = 1.0
    baseline: float | None = None
    note: str = ""
    colour: str = "drop"  # "drop": by the fall below `baseline`; "ratio": by the value itself

    def style_of(self, value: float) -> str:
        if self.colour == "ratio":
            return ratio_style(value)
        return drop_style(None if self.baseline is None else self.baseline - value)


@dataclass(frozen=True)
class Panel:
    """All series of one kind (e.g. RM: one row per class)."""

    title: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Grid:
    """A layer x kind table with a detail text per cell, and chart panels beside it."""

    title: Text
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    cells: dict[tuple[str, str], tuple[str, str]]  # (row, column) -> (text, style)
    details: dict[tuple[str, str], Text]
    panels: tuple[Panel, ...]
    axis: tuple[str, ...]  # numbered layer labels along the charts' x axis
    legend: str = ""
    choices: tuple[str, ...] = ()  # alphas of a scan, or pairs of a comparison
    choice: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # a line shown above the table and charts (BN: the norms the theory left out)


def fitted_scale(values: Sequence[float | None], baseline: float | None, span: float = 0.05) -> tuple[float, float]:
    """A chart axis from the lowest to the highest of `values` and the baseline, at least `span`
    tall: a 0.05 Dice drop fills a visible part of the chart instead of 1/16 of a 0..1 axis."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if baseline is not None and math.isfinite(baseline):
        finite.append(baseline)
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi - lo < span:
        lo = max(0.0, hi - span)
        hi = lo + span
    return lo, hi


def _columns(labels: Sequence[str]) -> tuple[str, ...]:
    from reuse_console.engine.models.layers import KINDS

    known = [k for k in KINDS if k in labels]
    return tuple(known + [k for k in dict.fromkeys(labels) if k not in known])


# -- scans ---------------------------------------------------------------------------------


def scan_grid(result: Any, alpha_choice: int = 0) -> Grid:
    """Dice after each swap of `result` (an engine ScanResult) at one of its alphas, raw or (a scan
    with --recalibrate) with the norm statistics re-estimated: the choices cycle through both."""
    alphas = sorted({v.alpha for v in result.variants}, reverse=True) or [1.0]
    recal_modes = (False, True) if result.recalibrated is not None else (False,)
    options = [(a, r) for a in alphas for r in recal_modes]
    alpha_choice %= len(options)
    alpha, recalibrated = options[alpha_choice]
    classes = list(result.classes)
    present = list(result.present)
    fg = [c for c in range(1, len(classes)) if present[c]] or [c for c in range(len(classes)) if present[c]]
    if recalibrated:  # NaN cells (a scan with --empty ignore) are left out of every mean
        base, means = _nanmean(result.recalibrated_baseline, 0), _nanmean(result.recalibrated, 1)
        done = ~np.isnan(result.recalibrated).all(axis=(1, 2))
    else:
        base, means, done = result.baseline_mean, result.mean, result.done  # (C,), (V, C), (V,)
    base_fg = float(_nanmean(base[fg], 0)) if fg else math.nan
    chosen = [(i, v) for i, v in enumerate(result.variants) if v.alpha == alpha]
    rows = tuple(dict.fromkeys(v.layer for _, v in chosen))
    columns = _columns([v.kind for _, v in chosen])
    cells: dict[tuple[str, str], tuple[str, str]] = {}
    details: dict[tuple[str, str], Text] = {}
    for i, v in chosen:
        m = means[i]
        if not done[i]:
            cells[(v.layer, v.kind)] = ("…", "dim")
            details[(v.layer, v.kind)] = Text(f"layer {v.layer} {v.kind}: not evaluated yet", style="dim")
            continue
        value = float(_nanmean(m[fg], 0)) if fg else math.nan
        cells[(v.layer, v.kind)] = (f"{value:.3f}", drop_style(base_fg - value))
        detail = Text.assemble((f"layer {v.layer} {v.kind} α={v.alpha:g}  ", "bold"))
        for c, name in enumerate(classes):
            if not present[c]:
                continue
            delta = float(m[c] - base[c])
            detail.append(f"{name} {m[c]:.3f}")
            detail.append(f" ({delta:+.3f})  ", style=drop_style(-delta))
        details[(v.layer, v.kind)] = detail
        if len(alphas) > 1:
            detail.append_text(_against_alpha(result, means, v.layer, v.kind, fg))
    numbered = [v for _, v in chosen if v.index is not None]
    axis = tuple(str(i) for i in sorted({v.index for v in numbered}))
    where = {(str(v.index), v.kind): i for i, v in chosen if v.index is not None}
    panels = []
    for kind in columns:
        series = []
        for c, name in enumerate(classes):
            if not present[c]:
                continue
            values = tuple(finite_or_none(means[where[(x, kind)], c]) if (x, kind) in where else None for x in axis)
            if any(v is not None for v in values):
                lo, hi = fitted_scale(values, float(base[c]))
                note = f"{base[c]:.2f}→{lo:.2f}"
                series.append(Series(name, values, lo, hi, float(base[c]), note))
        if series:
            panels.append(Panel(f"{kind} swapped: Dice per class against layer", tuple(series)))
    title = Text.assemble(
        ("scan ", "dim"),
        (result.name, "bold"),
        "  ",
        (f"{result.recipient} ← {result.donor}", ""),
        (f" on {result.data}  ", "dim"),
        ("baseline fg Dice ", "dim"),
        (f"{base_fg:.3f}", "bold"),
    )
    if len(options) > 1:
        shown = f"α={alpha:g}" if len(alphas) > 1 else ""
        shown += " recalibrated" if recalibrated else (" raw" if len(recal_modes) > 1 else "")
        title.append(f"  {shown.strip()} (a: next)", style="yellow")
    return Grid(
        title=title,
        rows=rows,
        columns=columns,
        cells=cells,
        details=details,
        panels=tuple(panels),
        axis=axis,
        legend="mean foreground Dice after each swap; colour: drop from the baseline; "
        "charts: each class on its own axis, baseline→lowest",
        choices=tuple(f"{a:g}{' recalibrated' if r else ''}" for a, r in options),
        choice=alpha_choice,
        extra={"recipient": result.recipient, "donor": result.donor},
    )


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean leaving NaN out (a scan with --empty ignore), NaN where nothing is left, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def _against_alpha(result: Any, means: np.ndarray, layer: str, kind: str, fg: list[int]) -> Text:
    """A second detail line for an alpha scan: foreground Dice against alpha for one cell."""
    points = sorted((v.alpha, i) for i, v in enumerate(result.variants) if (v.layer, v.kind) == (layer, kind))
    line = Text("\nDice against α: ", style="dim")
    for n, (alpha, i) in enumerate(points):
        value = float(_nanmean(means[i][fg], 0)) if fg else math.nan
        line.append(f"{alpha:g} ", style="dim")
        line.append("…" if math.isnan(value) else f"{value:.3f}")
        line.append("  " if n < len(points) - 1 else "")
    return line


# -- comparisons (RMSE) --------------------------------------------------------------------


def rmse_grid(comp: Any, pair_choice: int = 0) -> Grid:
    """Relative RMSE per layer and kind for one pair of a comparison (an engine Comparison)."""
    pairs = list(comp.pairs) or [(0, 1)]
    pair_choice %= len(pairs)
    a, b = pairs[pair_choice]
    rows = tuple(comp.layers)
    columns = tuple(comp.kinds)
    cells: dict[tuple[str, str], tuple[str, str]] = {}
    details: dict[tuple[str, str], Text] = {}
    for li, layer in enumerate(comp.layers):
        for ki, kind in enumerate(comp.kinds):
            rmse = finite_or_none(comp.rmse[pair_choice, li, ki])
            if rmse is None:
                continue
            rel = finite_or_none(comp.relative[pair_choice, li, ki])
            cells[(layer, kind)] = (f"{rel:.3f}" if rel is not None else f"{rmse:.3g}", ratio_style(rel))
            details[(layer, kind)] = Text.assemble(
                (f"layer {layer} {kind}  ", "bold"),
                f"RMSE {rmse:.4g}  RMS of {comp.models[a]} {comp.rms[a, li, ki]:.4g}  ",
                (f"relative {rel:.4g}" if rel is not None else "relative -", ratio_style(rel)),
            )
    numbered = [(li, comp.index[li]) for li in range(len(comp.layers)) if comp.index[li] is not None]
    axis = tuple(str(n) for _, n in numbered)
    panels = []
    for ki, kind in enumerate(comp.kinds):
        series = []
        for p, (pa, pb) in enumerate(pairs):
            values = tuple(finite_or_none(comp.relative[p, li, ki]) for li, _ in numbered)
            finite = [v for v in values if v is not None]
            if finite:
                top = max(finite) or 1.0
                label = f"{comp.models[pa]}↔{comp.models[pb]}"
                series.append(Series(label, values, 0.0, top, None, f"max {top:.3g}", "ratio"))
        if series:
            panels.append(Panel(f"{kind} relative RMSE", tuple(series)))
    title = Text.assemble(
        ("comparison ", "dim"),
        (comp.name, "bold"),
        "  ",
        (f"{comp.models[a]} ↔ {comp.models[b]}", ""),
    )
    if len(pairs) > 1:
        title.append(f"  pair {pair_choice + 1}/{len(pairs)} (p: next)", style="yellow")
    return Grid(
        title=title,
        rows=rows,
        columns=columns,
        cells=cells,
        details=details,
        panels=tuple(panels),
        axis=axis,
        legend="cells: RMSE relative to the first model's RMS; green small, red ≥ 1",
        choices=tuple(f"{comp.models[x]}↔{comp.models[y]}" for x, y in pairs),
        choice=pair_choice,
        extra={"recipient": comp.models[a], "donor": comp.models[b]},
    )


# -- BN scale and shift --------------------------------------------------------------------


BN_LEGEND = "RV/RW: scale ratio s'/s (×); RM/RB: mean |shift change| (Δ); green small, red large"
NO_BN_LEGEND = "the BN view reads norms with running statistics: BatchNorm, InstanceNorm with track_running_stats"


def bn_grid(layers: Sequence[Any], recipient: str, donor: str, note: str | None = None) -> Grid:
    """Per BN layer and swapped kind: the scale ratio s'/s (RV, RW) or the shift change t'-t (RM, RB).
    `note`: the engine's line on norms without running statistics (all of them: no layers)."""
    rows = tuple(layer.layer for layer in layers)
    columns = ("RM", "RV", "RW", "RB")
    cells: dict[tuple[str, str], tuple[str, str]] = {}
    details: dict[tuple[str, str], Text] = {}
    scale_change: dict[tuple[str, str], float | None] = {}
    shift_change: dict[tuple[str, str], float | None] = {}
    for layer in layers:
        summary = layer.summary()
        t_scale = float(np.mean(np.abs(layer.t["recipient"]))) or 1.0
        for kind, info in summary["swaps"].items():
            geo = info["scale_ratio_geomean"]
            shift = info["shift_diff_mean_abs"]
            log_ratio = abs(math.log(geo)) if geo else None
            rel_shift = shift / t_scale if shift is not None else None
            scale_change[(layer.layer, kind)], shift_change[(layer.layer, kind)] = log_ratio, rel_shift
            if kind in ("RV", "RW"):
                text, style = (f"×{geo:.3g}" if geo else "-"), ratio_style(log_ratio)
            else:
                text, style = (f"Δ{shift:.3g}" if shift is not None else "-"), ratio_style(rel_shift)
            cells[(layer.layer, kind)] = (text, style)
            geo_text = f"{geo:.4g}" if geo is not None else "-"
            lo, hi = info["scale_ratio_min"], info["scale_ratio_max"]
            span = f"[{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "-"
            shift_text = f"{shift:.3g} (max {info['shift_diff_max_abs']:.3g})" if shift is not None else "-"
            details[(layer.layer, kind)] = Text.assemble(
                (f"layer {layer.layer} {kind}  ", "bold"),
                f"s'/s geomean {geo_text} range {span}  sign flips {info['sign_flips']}  |t'-t| mean {shift_text}",
            )
    numbered = [layer for layer in layers if layer.index is not None]
    axis = tuple(str(layer.index) for layer in numbered)
    panels = []
    for kind in columns:
        source = scale_change if kind in ("RV", "RW") else shift_change
        values = tuple(source.get((layer.layer, kind)) for layer in numbered)
        finite = [v for v in values if v is not None]
        if finite:
            top = max(finite) or 1.0
            what = "|log s'/s|" if kind in ("RV", "RW") else "|t'-t| / mean|t|"
            panels.append(
                Panel(f"{kind} swap: {what}", (Series(kind, values, 0.0, top, None, f"max {top:.3g}", "ratio"),))
            )
    title = Text.assemble(("BN scale/shift ", "dim"), (f"{recipient} ← {donor}", "bold"))
    return Grid(
        title=title,
        rows=rows,
        columns=columns,
        cells=cells,
        details=details,
        panels=tuple(panels),
        axis=axis,
        legend=BN_LEGEND if layers else NO_BN_LEGEND,
        extra={"recipient": recipient, "donor": donor},
        note=note or "",
    )


# -- charts --------------------------------------------------------------------------------


def chart_lines(grid: Grid, width: int, height: int = 2) -> list[Text]:
    """Every panel as text: a title line, then `height` rows per series with its label and note."""
    longest = max((len(s.label) for p in grid.panels for s in p.series), default=0)
    label_w, note_w = max(11, min(17, longest + 1)), 12
    n = max(1, len(grid.axis))
    cell = max(1, min(3, (width - label_w - note_w - 2) // n))
    lines: list[Text] = []
    if grid.axis:
        ruler = Text(" " * label_w)
        for i, name in enumerate(grid.axis):
            mark = name if (i % max(1, 4 // cell) == 0) else ""
            ruler.append(mark[:cell].ljust(cell), style="dim")
        lines.append(ruler)
    for panel in grid.panels:
        lines.append(Text(panel.title, style="bold"))
        for series in panel.series:
            rows = level_rows(series.values, height, series.lo, series.hi, series.style_of, cell)
            for r, row in enumerate(rows):
                label = _fit(series.label, label_w - 1).ljust(label_w) if r == height - 1 else " " * label_w
                line = Text(label)
                line.append_text(row)
                if r == height - 1:
                    line.append(f" {series.note}", style="dim")
                lines.append(line)
    return lines


def _fit(label: str, width: int) -> str:
    """`label` in `width` characters, cut in the middle so both ends stay readable (`unet-ae… aligned`)."""
    if len(label) <= width:
        return label
    head = (width - 1) // 2
    return label[:head] + "…" + label[len(label) - (width - 1 - head) :]
