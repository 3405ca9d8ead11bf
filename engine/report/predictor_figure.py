"""The predictor table in a report: one scatter per measure (measure vs Dice drop, by kind) and rho
with its 95% interval per measure, plus a Markdown table and a CSV of the per-tensor values.

Kept out of figures.py (the scan and comparison figures) so the two grow apart without conflicts;
it uses that module's figure helpers and colours.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.report.figures import PALETTE, _figure, _save
from reuse_console.engine.reuse.predict import ALL, Predictor
from reuse_console.engine.reuse.predict_store import read_predictor

COLUMNS = 4


def predictor_figure(path: Path, result: Predictor) -> Path:
    """Scatter of each measure against the drop (log x for positive measures), then rho per measure."""
    measures = list(result.measures)
    panels = len(measures) + 1
    rows = -(-panels // COLUMNS)
    fig = _figure(3.2 * min(panels, COLUMNS), 2.8 * rows)
    axes = fig.subplots(rows, min(panels, COLUMNS), squeeze=False).ravel()
    drops = np.array([t.drop for t in result.tensors])
    kinds = np.array([t.kind for t in result.tensors])
    for m, (ax, measure) in enumerate(zip(axes, measures)):
        x = np.array([t.values[m] for t in result.tensors])
        for k, kind in enumerate(KINDS):
            chosen = (kinds == kind) & np.isfinite(x)
            if chosen.any():
                ax.scatter(x[chosen], drops[chosen], s=12, color=PALETTE[k], label=kind, alpha=0.8)
        finite = x[np.isfinite(x)]
        if len(finite) and (finite > 0).all() and finite.max() / finite.min() > 100:
            ax.set_xscale("log")
        ax.axhline(result.max_dice_drop, color="#555555", linestyle="--", linewidth=0.8)
        row = result.row(measure, ALL)
        if row is not None:
            ax.set_title(f"{measure}: rho {row.rho:+.2f}, AUC {row.auc:.2f}", fontsize=9)
        ax.set_xlabel(measure, fontsize=8)
        ax.set_ylabel("Dice drop", fontsize=8)
        ax.tick_params(labelsize=7)
    if measures:
        axes[0].legend(fontsize=7, loc="best")
    _rho_panel(axes[len(measures)], result)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"Does a measure predict the Dice drop? {result.recipient} <- {result.donor} ({result.scan})")
    return _save(fig, path)


def _rho_panel(ax: Any, result: Predictor) -> None:
    """Spearman's rho over all tensors with its bootstrap 95% interval, one bar per measure."""
    rows = [result.row(m, ALL) for m in result.measures]
    rho = np.array([r.rho if r else np.nan for r in rows])
    low = np.array([r.low if r else np.nan for r in rows])
    high = np.array([r.high if r else np.nan for r in rows])
    y = np.arange(len(rows))
    ax.barh(y, np.nan_to_num(rho), color=PALETTE[0], alpha=0.7)
    err = np.vstack([np.nan_to_num(rho - low), np.nan_to_num(high - rho)])
    ax.errorbar(np.nan_to_num(rho), y, xerr=np.abs(err), fmt="none", ecolor="black", capsize=3, linewidth=1)
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.set_yticks(y, result.measures, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-1, 1)
    ax.set_title("Spearman rho, 95% interval", fontsize=9)
    ax.tick_params(labelsize=7)


def markdown_table(result: Predictor) -> str:
    lines = ["| measure | n | rho | 95% interval | AUC |", "|---|---:|---:|---|---:|"]
    for measure in result.measures:
        row = result.row(measure, ALL)
        if row is not None:
            interval = "-" if row.low != row.low else f"[{row.low:+.2f}, {row.high:+.2f}]"
            auc = "-" if row.auc != row.auc else f"{row.auc:.2f}"
            rho = "-" if row.rho != row.rho else f"{row.rho:+.2f}"
            lines.append(f"| {measure} | {row.n} | {rho} | {interval} | {auc} |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, result: Predictor) -> Path:
    """One row per tensor: key, layer, kind, drop and every measure."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["key", "layer", "kind", "drop", *result.measures])
        for t in result.tensors:
            out.writerow([t.key, t.layer, t.kind, f"{t.drop:.6g}", *(f"{v:.6g}" for v in t.values)])
    return path


def predictor_report(path: Path, name: str, out: Path) -> tuple[list[Path], str]:
    """The figure, the CSV and the report section of the predictor table stored at `path`."""
    result = read_predictor(path, name)
    figure = predictor_figure(out / f"{name}-predictor.png", result)
    table = write_csv(out / f"{name}-tensors.csv", result)
    text = (
        f"## Predictor {name}\n\nDoes a measure predict the Dice drop of scan {result.scan} "
        f"({len(result.tensors)} tensors, reusable at drop <= {result.max_dice_drop:g})?\n\n"
        f"![rho and scatter per measure]({figure.name})\n\n{markdown_table(result)}\n"
        f"Per tensor: [{table.name}]({table.name})\n"
    )
    return [figure, table], text
