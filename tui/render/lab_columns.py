"""The Lab screen's cells: short times, summaries, scores; and the Checkpoints table fitted to
the terminal's width.

A checkpoint's row (id, arch, task, data, epoch, Dice/PSNR, created) is wider than 80 columns
once ids are a grid cell's (`acdc-reuse.auto2seg-finetune-n20-s0.last`, 41 characters), and a
DataTable then cuts what is on the right: `created`. So, in this order, until the row fits:
`created` keeps its date alone, then goes; only then are ids cut in their middle with a visible
`…`, keeping both ends (the experiment and the cell's mode, size, seed and `.init`/`.last`).
The full id stays the row's key (what Enter opens, the Layers screen's title), the filter
matches it, and a wider terminal shows everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAD = 2  # a DataTable cell's padding (one column each side)
MIN_ID = 16  # ids are never cut shorter than this (the table scrolls sideways instead)
MARK = "…"


def short_time(iso: str) -> str:
    """`2025-01-02T03:04:05+00:00` -> `2025-01-02 03:04` (what a table has room for)."""
    return iso.replace("T", " ")[:16] if iso else ""


def summary_text(summary: dict[str, Any]) -> str:
    """Scalar summary fields as `k=v` pairs."""
    parts = []
    for key, value in summary.items():
        if isinstance(value, (dict, list)) or key == "kind":
            continue
        if isinstance(value, float):
            value = f"{value:.3f}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def checkpoint_score(summary: dict[str, Any]) -> str:
    """Dice (foreground mean) for segmentation checkpoints, PSNR for auto-encoders."""
    if isinstance(summary.get("dice_fg"), (int, float)):
        return f"Dice {summary['dice_fg']:.3f}"
    if isinstance(summary.get("psnr"), (int, float)):
        return f"PSNR {summary['psnr']:.1f}"
    return "-"


def elide_middle(text: str, width: int) -> str:
    """`text` in `width` characters, its middle replaced by `…` so that both ends stay readable."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + MARK + text[len(text) - (width - 1 - head) :]


def _width(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> int:
    """The table's width: each column as wide as its widest cell or header, plus padding."""
    return sum(max([len(h), *(len(r[i]) for r in rows)]) + PAD for i, h in enumerate(headers))


def fit_columns(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """Headers and cells that fit `width` columns: the first column is the id, the last `created`
    (`YYYY-MM-DD HH:MM`). See the module's docstring for what gives way, and in which order."""
    shown = [list(r) for r in rows]
    heads = list(headers)
    if _width(heads, shown) <= width:
        return heads, shown
    dated = [[*r[:-1], r[-1][:10]] for r in shown]  # the date alone
    if _width(heads, dated) <= width:
        return heads, dated
    heads, shown = heads[:-1], [r[:-1] for r in shown]
    room = width - _width(heads[1:], [r[1:] for r in shown]) - PAD
    if _width(heads, shown) > width:
        cut = max(room, MIN_ID)
        shown = [[elide_middle(r[0], cut), *r[1:]] for r in shown]
    return heads, shown
