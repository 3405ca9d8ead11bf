"""Tiny text charts: histogram bars and fixed-scale multi-row sparklines (Dice against layer).

Textual's Sparkline scales every series to its own min..max; a Dice curve has to be drawn on a
fixed 0..1 scale beside its baseline, so these render rich Text directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.text import Text

BARS = " ▁▂▃▄▅▆▇█"


def hist_bars(counts: Sequence[int], style: str = "cyan") -> Text:
    """One character per bin, height by count relative to the largest bin; empty bins blank."""
    top = max(counts) if counts else 0
    chars = []
    for c in counts:
        if c <= 0 or top <= 0:
            chars.append(" ")
        else:
            chars.append(BARS[max(1, round(c / top * 8))])
    return Text("".join(chars), style=style)


def drop_style(drop: float | None) -> str:
    """Colour of a Dice drop (baseline minus swapped), in colours a 256-colour terminal has."""
    if drop is None or math.isnan(drop):
        return "dim"
    if drop < 0.01:
        return "green"
    if drop < 0.05:
        return "yellow"
    if drop < 0.2:
        return "dark_orange"
    return "bold red"


def ratio_style(value: float | None) -> str:
    """Colour of a relative difference (relative RMSE, scale change): small green, large red."""
    if value is None or math.isnan(value):
        return "dim"
    if value < 0.1:
        return "green"
    if value < 0.5:
        return "yellow"
    if value < 1.0:
        return "dark_orange"
    return "bold red"


def level_rows(
    values: Sequence[float | None],
    height: int = 2,
    lo: float = 0.0,
    hi: float = 1.0,
    style_of: Callable[[float], str] | None = None,
    width: int = 1,
) -> list[Text]:
    """A sparkline `height` rows tall on the fixed scale lo..hi, one column (x `width`) per value.

    `style_of(value)` colours each column (e.g. by the drop from a baseline); missing values
    are drawn as '·'. Rows are returned top first.
    """
    levels = height * 8
    rows = [Text() for _ in range(height)]
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            for r, row in enumerate(rows):
                row.append(("·" if r == height - 1 else " ") * width, style="dim")
            continue
        frac = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
        filled = max(1, round(frac * levels))
        style = style_of(value) if style_of is not None else ""
        for r in range(height):
            below = (height - 1 - r) * 8  # levels under this row
            part = min(8, max(0, filled - below))
            rows[r].append(BARS[part] * width, style=style)
    return rows
