"""Paper-style figures as PNG files, drawn with matplotlib's object API and the Agg renderer.

matplotlib is an optional extra (`pip install 'reuse-console[report]'`); it is imported only when
a figure is drawn, and its absence is one clear UserError. No pyplot: figures are plain
`Figure` objects, so drawing never touches global state or needs a display.

Every layer axis lists the layers in forward order: numbered Conv+BN layers 1..N, then the
unnumbered convolutions (up1.., head) by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reuse_console.store.errors import UserError

if TYPE_CHECKING:  # matplotlib is optional (the report extra): imported where a figure is made
    from matplotlib.figure import Figure

KIND_NAMES = {
    "RM": "RM: BN running mean",
    "RV": "RV: BN running variance",
    "RW": "RW: BN weight",
    "RB": "RB: BN bias",
    "W": "W: conv weight",
    "B": "B: conv bias",
}
CLASS_COLORS = {"background": "#9e9e9e", "RV": "#1f77b4", "MYO": "#2ca02c", "LV": "#d62728"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
HATCHES = ["", "//", "..", "xx"]
DPI = 120


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise UserError("figures need matplotlib: pip install 'reuse-console[report]' (or `make setup`)") from exc
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _class_color(name: str, i: int) -> str:
    return CLASS_COLORS.get(name, PALETTE[i % len(PALETTE)])


def _layer_axis(ax: Any, labels: Sequence[str]) -> None:
    """Categorical layer axis: every numbered layer ticked, names rotated to stay readable."""
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90 if len(labels) > 12 else 0, fontsize=7)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(True, axis="y", alpha=0.3)


def _plain_ticks(ax: Any) -> None:
    """Log-axis ticks written as plain numbers (0.9, 2) rather than 9x10^-1."""
    from matplotlib.ticker import FormatStrFormatter

    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))


def _present(values: np.ndarray) -> list[int]:
    """Indices of the layers (rows) with any finite value: a panel shows only layers with that kind."""
    rows = np.isfinite(values).reshape(values.shape[0], -1).any(axis=1)
    return [int(i) for i in np.flatnonzero(rows)] or list(range(values.shape[0]))


def _panels(n: int) -> tuple[int, int]:
    cols = 3 if n > 4 else 2 if n > 1 else 1
    return math.ceil(n / cols), cols


def _label_panel(ax: Any, k: int, grid: tuple[int, int], title: str, labels: Sequence[str], ylabel: str) -> None:
    """Panel k of a rows x cols grid: its title, layer axis, and axis names on the outer panels."""
    rows, cols = grid
    ax.set_title(title, fontsize=10)
    _layer_axis(ax, labels)
    if k % cols == 0:
        ax.set_ylabel(ylabel)
    if k // cols == rows - 1:
        ax.set_xlabel("layer")


def _hide_unused(axes: Any, used: int, grid: tuple[int, int]) -> None:
    rows, cols = grid
    for k in range(used, rows * cols):
        axes[k // cols][k % cols].set_visible(False)


def dice_per_layer(
    path: Path,
    *,
    title: str,
    layers: Sequence[str],
    kinds: Sequence[str],
    classes: Sequence[str],
    dice: np.ndarray,
    baseline: np.ndarray,
) -> Path:
    """Figs 3/4/7/8: mean Dice after swapping one tensor, per layer, one panel per kind.

    dice: (K, L, C) mean Dice over subjects, NaN where the layer has no such kind; baseline (C,).
    Lines are the classes; the dashed line of the same colour is the unswapped baseline.
    """
    rows, cols = _panels(len(kinds))
    fig = _figure(4.6 * cols, 3.3 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for k, kind in enumerate(kinds):
        ax = axes[k // cols][k % cols]
        has = _present(dice[k])
        x = np.arange(len(has))
        for c, name in enumerate(classes):
            color = _class_color(name, c)
            ax.plot(x, dice[k, has, c], marker="o", ms=3, lw=1.2, color=color, label=name)
            ax.axhline(baseline[c], color=color, ls="--", lw=0.9, alpha=0.8)
        ax.set_ylim(-0.03, 1.03)
        _label_panel(
            ax, k, (rows, cols), KIND_NAMES.get(kind, kind), [layers[i] for i in has], "Dice (mean over subjects)"
        )
    _hide_unused(axes, len(kinds), (rows, cols))
    handles, labels = axes[0][0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], color="black", ls="--", lw=0.9))
    labels.append("baseline (no swap)")
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def overlay_per_layer(
    path: Path,
    *,
    title: str,
    layers: Sequence[str],
    kinds: Sequence[str],
    lines: Sequence[Any],
) -> Path:
    """Several scans on one axis, one panel per kind: foreground Dice after swapping one tensor.

    lines: engine.swaps.overlay.Line objects (label, mean/low/high (K, L), baseline, recalibrated,
    pairs). A line's colour is its donor; recalibrated lines are dotted beside their raw line; a
    line over several pairs has a shaded band from its lowest to its highest pair; the thin
    dashed line of the same colour is its baseline.
    """
    rows, cols = _panels(len(kinds))
    fig = _figure(4.6 * cols, 3.3 * rows + 0.7)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    colours: dict[str, str] = {}
    for k, kind in enumerate(kinds):
        ax = axes[k // cols][k % cols]
        has = _present(np.stack([line.mean[k] for line in lines], axis=1))
        x = np.arange(len(has))
        for line in lines:
            root = line.label.removesuffix(" recal")
            colour = colours.setdefault(root, PALETTE[len(colours) % len(PALETTE)])
            style = ":" if line.recalibrated else "-"
            ax.plot(x, line.mean[k, has], ls=style, marker="o", ms=2.5, lw=1.2, color=colour, label=line.label)
            if line.pairs > 1:
                ax.fill_between(x, line.low[k, has], line.high[k, has], color=colour, alpha=0.18, lw=0)
            ax.axhline(line.baseline, color=colour, ls="--", lw=0.6, alpha=0.6)
        ax.set_ylim(-0.03, 1.03)
        _label_panel(ax, k, (rows, cols), KIND_NAMES.get(kind, kind), [layers[i] for i in has], "foreground Dice")
    _hide_unused(axes, len(kinds), (rows, cols))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def values_per_layer(
    path: Path,
    *,
    title: str,
    layers: Sequence[str],
    kinds: Sequence[str],
    series: Sequence[tuple[str, np.ndarray]],
    ylabel: str,
    styles: Sequence[dict] | None = None,
    log: bool | None = None,
) -> Path:
    """Figs 6/10-12 and 13/14: one value per layer and kind (e.g. RMSE), one panel per kind.

    series: (label, (L, K) array with NaN where the layer has no such kind). The y axis is
    logarithmic when the values span more than two decades (or as `log` says).
    """
    rows, cols = _panels(len(kinds))
    fig = _figure(4.6 * cols, 3.3 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, kind in enumerate(kinds):
        ax = axes[k // cols][k % cols]
        has = _present(np.stack([v[:, k] for _, v in series], axis=1)) if series else list(range(len(layers)))
        x = np.arange(len(has))
        values = np.concatenate([v[has, k] for _, v in series]) if series else np.zeros(0)
        positive = values[np.isfinite(values) & (values > 0)]
        use_log = log if log is not None else bool(positive.size and positive.max() / positive.min() > 100)
        for i, (label, v) in enumerate(series):
            style = {"color": PALETTE[i % len(PALETTE)], "marker": "o", "ms": 3, "lw": 1.2}
            style.update((styles or [{}] * len(series))[i])
            y = v[has, k].astype(float)
            if use_log:
                y = np.where(y > 0, y, np.nan)  # exact zeros (frozen tensors) cannot be drawn on a log axis
            ax.plot(x, y, label=label, **style)
        if use_log:
            ax.set_yscale("log")
        title = KIND_NAMES.get(kind, kind) + (" (log scale)" if use_log else "")
        _label_panel(ax, k, (rows, cols), title, [layers[i] for i in has], ylabel)
    _hide_unused(axes, len(kinds), (rows, cols))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def bn_scale_shift(
    path: Path, *, title: str, layers: Sequence[str], scale: dict[str, np.ndarray], shift: dict[str, np.ndarray]
) -> Path:
    """Figs 5/9: per BN layer, how one swapped tensor changes the scale s and the shift t.

    scale: kind -> (L,) geometric mean over channels of s'/s (RV, RW); shift: kind -> (L,) mean
    |t' - t| over channels (RM, RV, RW, RB).
    """
    fig = _figure(12, 4.2)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(layers))
    colors = {"RM": PALETTE[0], "RV": PALETTE[1], "RW": PALETTE[2], "RB": PALETTE[3]}
    for kind, v in scale.items():
        left.plot(x, v, marker="o", ms=3, color=colors[kind], label=f"swap {kind}")
    left.axhline(1.0, color="black", lw=0.8, ls="--", label="unchanged (1)")
    ratios = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in scale.values()] or [np.ones(1)])
    if ratios.size and ratios.max() / ratios.min() > 10:
        left.set_yscale("log")
        _plain_ticks(left)
    left.set_title("scale: s'/s  (geometric mean over channels)", fontsize=10)
    left.set_ylabel("s' / s")
    for kind, v in shift.items():
        right.plot(x, np.where(v > 0, v, np.nan), marker="o", ms=3, color=colors[kind], label=f"swap {kind}")
    right.set_yscale("log")
    right.set_title("shift: mean |t' - t| over channels", fontsize=10)
    right.set_ylabel("|t' - t|")
    for ax in (left, right):
        _layer_axis(ax, layers)
        ax.set_xlabel("BN layer")
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(title + "\neval-mode BN: y = s*x + t,  s = RW / sqrt(RV + eps),  t = RB - RM*s", fontsize=10)
    return _save(fig, path)


def plan_map(
    path: Path,
    *,
    title: str,
    layers: Sequence[str],
    kinds: Sequence[str],
    reusable: np.ndarray,
    drops: np.ndarray | None,
) -> Path:
    """A plan as a layer x kind map: green reused, red not, grey no such tensor; Dice drop written in."""
    from matplotlib.colors import ListedColormap

    fig = _figure(max(6.0, 0.42 * len(layers) + 1.5), 3.2)
    ax = fig.subplots()
    grid = reusable.astype(float).T  # (K, L): 1 reused, 0 not, NaN absent
    cmap = ListedColormap(["#e57373", "#81c784"]).with_extremes(bad="#eeeeee")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    if drops is not None:
        for k in range(len(kinds)):
            for li in range(len(layers)):
                value = drops[li, k]
                if np.isfinite(value):
                    ax.text(
                        li,
                        k,
                        f"{value:.2f}".replace("0.", ".").replace("-.", "-."),
                        ha="center",
                        va="center",
                        fontsize=6,
                    )
    ax.set_yticks(range(len(kinds)))
    ax.set_yticklabels(kinds)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, fontsize=7, rotation=90 if len(layers) > 12 else 0)
    ax.set_xlabel("layer (numbers in cells: worst foreground Dice drop of the swap)" if drops is not None else "layer")
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color="#81c784", label="reused"),
            Patch(color="#e57373", label="not reusable"),
            Patch(color="#eeeeee", label="no such tensor"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.32),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def table_image(
    path: Path, *, title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str = ""
) -> Path:
    """A text table rendered as an image (the grid's Table 3)."""
    chars = [max(len(str(h)), *(len(str(r[i])) for r in rows)) + 3 for i, h in enumerate(header)]
    width = max(6.0, 0.078 * sum(chars) + 0.5)
    fig = _figure(width, 0.9 + 0.3 * (len(rows) + 1) + (0.3 if note else 0))
    ax = fig.subplots()
    ax.axis("off")
    table = ax.table(
        cellText=[list(r) for r in rows],
        colLabels=list(header),
        loc="upper center",
        cellLoc="center",
        colWidths=[c / sum(chars) for c in chars],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (r, _c), cell in table.get_celld().items():
        cell.set_height(0.9 / (len(rows) + 2))
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8eaf6")
        elif r % 2 == 0:
            cell.set_facecolor("#f7f7f7")
    ax.set_title(title, fontsize=11)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, ha="left", va="bottom", wrap=True)
    return _save(fig, path)


def dice_bars(
    path: Path, *, title: str, groups: Sequence[str], series: Sequence[tuple[str, np.ndarray, np.ndarray]], ylabel: str
) -> Path:
    """Grouped bars with error bars: one group per subject count, one bar per (source, mode)."""
    fig = _figure(max(6.0, 1.2 + 0.35 * len(series) * len(groups)), 4.0)
    ax = fig.subplots()
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (label, mean, std) in enumerate(series):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            mean,
            width,
            yerr=np.nan_to_num(std),
            capsize=2,
            color=PALETTE[i % len(PALETTE)],
            hatch=HATCHES[(i // len(PALETTE)) % len(HATCHES)],  # past ten series the colours repeat: hatch them
            edgecolor="white",
            label=label,
        )
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(
        *ax.get_legend_handles_labels(), loc="outside lower center", ncol=min(4, len(series)), fontsize=8, frameon=False
    )
    ax.set_title(title, fontsize=11)
    return _save(fig, path)
