"""One-line charts shared by the result views: labelled sparklines and horizontal bars.

Each line is `label  chart  note`, the label padded to a fixed width so the charts of several
rows line up; values are drawn on a scale the caller gives (0..1 for Dice, 0..max for RMSE), so
rows of one panel compare by eye.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.text import Text

from ..widgets.charts import BARS, level_rows

BLOCKS = " ▏▎▍▌▋▊▉█"


def spark_line(
    label: str,
    values: Sequence[float | None],
    hi: float,
    *,
    label_width: int = 18,
    cell: int = 1,
    note: str = "",
    style_of: Callable[[float], str] | None = None,
) -> Text:
    """`label ▁▃▇█▅ note` on the scale 0..hi, `cell` characters per value ('·' where missing)."""
    line = Text(label[: label_width - 1].ljust(label_width), no_wrap=True, overflow="ellipsis")
    line.append_text(level_rows(values, 1, 0.0, hi if hi > 0 else 1.0, style_of, cell)[0])
    if note:
        line.append(f" {note}", style="dim")
    return line


def bar(value: float | None, width: int, style: str = "cyan") -> Text:
    """A horizontal bar of `value` in 0..1 over `width` cells, in eighths of a cell."""
    if value is None or not math.isfinite(value):
        return Text("·".ljust(width), style="dim")
    eighths = round(min(1.0, max(0.0, value)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (BLOCKS[part] if part and full < width else "")
    return Text(text.ljust(width), style=style)


def axis_ruler(labels: Sequence[str], label_width: int, cell: int) -> Text:
    """The layer names under a panel of sparklines, each at its column where it does not overlap."""
    chars = [" "] * (len(labels) * cell)
    free = 0
    for i, name in enumerate(labels):
        start = i * cell
        if start >= free and start + len(name) <= len(chars):
            chars[start : start + len(name)] = list(name)
            free = start + len(name) + 1
    return Text(" " * label_width + "".join(chars), style="dim", no_wrap=True)


def cell_width(n_values: int, width: int, label_width: int, note_width: int = 12) -> int:
    """Characters per value so `n_values` fit `width` beside the label and the note (1 to 3)."""
    room = width - label_width - note_width - 1
    return max(1, min(3, room // max(1, n_values)))


__all__ = ["BARS", "axis_ruler", "bar", "cell_width", "spark_line"]
