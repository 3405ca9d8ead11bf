"""`ls`: one line per object (kind, id, short local time, one short summary) fitted to the terminal.

Ids are never wrapped or cut, so they stay copyable: the id column is as wide as the longest id
(up to what leaves the summary some room), and only the summary gives way, cut with an ellipsis.
A longer id pushes its own row's time and summary right; one too long for the line makes its
row wider rather than being broken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from reuse_console.store.lab import Entry

GAP = "  "
MIN_SUMMARY = 24  # the id column stops growing where the summary would get less than this
STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "cancelled": "yellow", "lost": "magenta"}


def local_time(iso: str, now: dt.datetime | None = None) -> str:
    """`2025-12-04T17:36:05+00:00` -> `12-04 18:36` in the local zone; another year -> `2024-12-04`."""
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso[:16] or "-"
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    t = t.astimezone()
    now = now or dt.datetime.now().astimezone()
    return t.strftime("%m-%d %H:%M") if t.year == now.year else t.strftime("%Y-%m-%d")


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _on(s: dict[str, Any], *keys: str) -> str:
    """`unet seg on acdc` from whichever of arch, task, data the summary has."""
    head = " ".join(str(s[k]) for k in keys[:-1] if s.get(k))
    data = s.get(keys[-1])
    return f"{head} on {data}" if data else head


def short_summary(entry: Entry) -> Text:
    """One short phrase per object, from its listing summary (what `ls` shows)."""
    s = entry.summary
    if entry.error:
        return Text(entry.error, style="red")
    kind = entry.kind
    if kind == "datasets":
        parts = [f"{s.get('subjects', '?')} subjects ({s.get('val', '?')} val)"]
        parts += [f"{s['slices']} slices" if "slices" in s else "", f"{s['size']} px" if "size" in s else ""]
        return Text(", ".join(p for p in parts if p))
    if kind == "checkpoints":
        score = f"Dice {_num(s['dice_fg'])}" if "dice_fg" in s else f"PSNR {_num(s['psnr'], 1)}" if "psnr" in s else ""
        parts = [_on(s, "arch", "task", "data"), f"epoch {s['epoch']}" if "epoch" in s else "", score]
        return Text(", ".join(p for p in parts if p))
    if kind == "runs":
        status = str(s.get("status", "?"))
        text = Text(status, style=STATUS_STYLE.get(status, ""))
        return text.append(
            f" {s.get('epochs_done', '?')}/{s.get('epochs', '?')} epochs, {_on(s, 'arch', 'task', 'data')}"
        )
    if kind == "scans":
        worst = f", worst {s['worst']}" if "worst" in s else ""
        n = s.get("variants", "?")
        return Text(f"{s.get('recipient', '?')} <- {s.get('donor', '?')}{worst}, {n} variant{'' if n == 1 else 's'}")
    if kind == "comparisons" and s.get("measure") == "cka":
        least = f", min {_num(s['min_linear'], 2)}" if "min_linear" in s else ""
        return Text(f"CKA {s.get('models', '?')} on {s.get('data', '?')}, {s.get('layers', '?')} layers{least}")
    if kind == "comparisons" and s.get("measure") == "predictor":
        best = f"best {s['best']}" if "best" in s else "predictor"
        return Text(f"{best} on scan {s.get('scan', '?')}, {s.get('tensors', '?')} tensors")
    if kind == "comparisons":
        most = f", max rel {_num(s['max_relative'], 2)}" if "max_relative" in s else ""
        return Text(f"{s.get('models', '?')}{most}, {s.get('layers', '?')} layers")
    if kind == "plans":
        share = s.get("tensor_share")
        pct = f" ({100 * share:.0f}%)" if isinstance(share, (int, float)) else ""
        return Text(f"{s.get('arch') or '?'}: reuses {s.get('reused', '?')}/{s.get('tensors', '?')} tensors{pct}")
    if kind == "experiments":
        best = f", best {s['best']}" if "best" in s else ""
        return Text(f"{s.get('status', '?')} {s.get('cells', '?')} cells{best}, on {s.get('target', '?')}")
    if kind == "jobs":
        return Text(str(s.get("command", "")))
    return Text(" ".join(f"{k}={v}" for k, v in s.items() if not isinstance(v, (dict, list)) and k != "kind"))


def listing(entries: Sequence[Entry], width: int) -> RenderableType:
    """The default `ls`: a header and one line per object, no line wider than `width` unless an
    id alone is."""
    rows = [(e.kind[:-1], e.id, local_time(e.created) if e.created else "-", short_summary(e)) for e in entries]
    kind_w = max([len("kind")] + [len(r[0]) for r in rows])
    time_w = max([len("created")] + [len(r[2]) for r in rows])
    fixed = kind_w + time_w + 3 * len(GAP)
    fits = [len(r[1]) for r in rows if len(r[1]) <= width - fixed - MIN_SUMMARY]
    id_w = max([len("id"), *fits])  # a longer id pushes its own row's time and summary right
    lines = [Text(f"{'kind':<{kind_w}}{GAP}{'id':<{id_w}}{GAP}{'created':<{time_w}}{GAP}summary", style="bold")]
    for kind, obj_id, created, summary in rows:
        line = Text(f"{kind:<{kind_w}}{GAP}")
        line.append(f"{obj_id:<{id_w}}", style="bold")
        line.append(f"{GAP}{created:<{time_w}}{GAP}", style="dim")
        room = width - len(line)
        if room >= 4:
            summary.truncate(room, overflow="ellipsis")
            line.append_text(summary)
        lines.append(line)
    return Group(*lines)


def long_listing(entries: Sequence[Entry], title: str) -> Table:
    """`ls --long`: every scalar summary field, the full creation stamp; ids still whole."""
    table = Table(title=title, title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("id", no_wrap=True, min_width=max([2] + [len(e.id) for e in entries]))
    table.add_column("created", overflow="fold")
    table.add_column("summary", overflow="fold")
    for e in entries:
        summary = Text(e.error, style="red") if e.error else Text(summary_fields(e.summary))
        table.add_row(e.kind[:-1], e.id, e.created.replace("+00:00", "Z"), summary)
    return table


def summary_fields(summary: dict[str, Any]) -> str:
    """Every scalar summary field as `key=value`."""
    return "  ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))
