"""Following a job: fold its progress events into a snapshot, and render that snapshot.

`JobFollower` lives in the polling worker's thread and is the only thing that reads a job's
event file (incrementally, by byte offset); what it hands to the UI is an immutable
`JobSnapshot`, so the UI thread never touches files and never sees a half-updated state.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from reuse_console.engine.core.events import CellDone, EpochEnd, Event, Finished, Message, Started, StepEnd, VariantDone
from reuse_console.engine.grids.status import CellStatus, counts

from .charts import BARS

MAX_LOSSES = 4000  # losses kept for the sparkline (older ones are thinned)
GRID_POLL_S = 1.0  # a grid's cells are read from the lab at most this often (one run file per cell)


def parse_time(iso: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None


def duration(seconds: float | None) -> str:
    """`1:02:03` / `2:03`; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass(frozen=True)
class JobSnapshot:
    """Everything the live view shows about one job at one moment."""

    id: str
    status: str
    command: str
    what: str = ""
    unit: str = "steps"
    total: int = 0
    done: int = 0
    epoch: int = 0
    epochs: int = 0
    images_per_s: float | None = None
    losses: tuple[float, ...] = ()
    epoch_rows: tuple[dict[str, Any], ...] = ()
    variants: tuple[VariantDone, ...] = ()
    cells: tuple[CellDone, ...] = ()
    message: str = ""
    result: str = ""
    seconds: float | None = None  # Finished.seconds
    elapsed: float | None = None
    eta: float | None = None
    rate: float | None = None  # units (variants, cells...) per second of a job without epochs
    log_tail: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    grid: tuple[CellStatus, ...] = ()  # a grid job's cells (engine/grids/status.py)

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


class JobFollower:
    """Reads one job's new events each poll and keeps the running state (worker thread only)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.offset = 0
        self.what = ""
        self.unit = "steps"
        self.total = 0
        self.done = 0
        self.epoch = 0
        self.epochs = 0
        self.images_per_s: float | None = None
        self.losses: list[float] = []
        self.epoch_rows: list[dict[str, Any]] = []
        self.variants: list[VariantDone] = []
        self.cells: list[CellDone] = []
        self.message = ""
        self.result = ""
        self.seconds: float | None = None
        self.info: dict[str, Any] = {}
        self.grid: tuple[CellStatus, ...] = ()
        self._study: Any = None  # (Study, experiment) of a grid job, once read
        self._grid_read = -GRID_POLL_S
        self._grid_final = False  # the cells were read after the job ended: they no longer change

    def feed(self, events: list[Event]) -> None:
        """Fold new events into the state."""
        for event in events:
            if isinstance(event, Started):
                self.what, self.total, self.unit, self.info = event.what, event.total, event.unit, dict(event.info)
                self.epochs = int(event.info.get("epochs", self.epochs) or 0)
                first = int(event.info.get("first_epoch", 1) or 1)
                steps = int(event.info.get("steps_per_epoch", 0) or 0)
                self.done = (first - 1) * steps if steps else 0
            elif isinstance(event, StepEnd):
                self.done = event.global_step
                self.total = event.total_steps or self.total
                self.epoch = event.epoch
                self.images_per_s = event.images_per_s
                self.losses.append(event.loss)
                if len(self.losses) > MAX_LOSSES:
                    self.losses = self.losses[::2]
            elif isinstance(event, EpochEnd):
                self.epoch, self.epochs = event.epoch, event.epochs
                self.images_per_s = event.images_per_s
                self.epoch_rows.append(
                    {
                        "epoch": event.epoch,
                        "loss": event.train_loss,
                        "best": event.best,
                        "img/s": event.images_per_s,
                        "s": event.seconds,
                        **event.val,
                    }
                )
            elif isinstance(event, VariantDone):
                self.done, self.total = event.index, event.total or self.total
                self.variants.append(event)
                self.variants = self.variants[-50:]
            elif isinstance(event, CellDone):
                self.done, self.total = event.index, event.total or self.total
                self.cells.append(event)
                self.cells = self.cells[-50:]
            elif isinstance(event, Message):
                self.message = event.text
            elif isinstance(event, Finished):
                self.result, self.seconds = event.result, event.seconds
                if self.total:
                    self.done = self.total

    def poll(self, job: Any, now: dt.datetime | None = None) -> JobSnapshot:
        """Read what the job wrote since the last poll and return a snapshot (file I/O: thread only)."""
        from reuse_console.engine.jobs.control import read_events, read_log_tail

        events, self.offset = read_events(job, self.offset)
        self.feed(events)
        started = parse_time(job.started)
        ended = parse_time(job.ended) if job.ended else None
        now = now or dt.datetime.now(dt.timezone.utc)
        elapsed = ((ended or now) - started).total_seconds() if started else None
        eta = rate = None
        if job.status == "running" and elapsed and self.total and 0 < self.done < self.total:
            eta = elapsed / self.done * (self.total - self.done)
        if elapsed and self.done and not self.epochs:
            rate = self.done / elapsed
        tail = tuple(read_log_tail(job, 8)) if job.status in ("failed", "lost", "cancelled") else ()
        if job.argv[:1] == ["grid"]:
            self._poll_grid(job)
        return JobSnapshot(
            id=job.id,
            status=job.status,
            command=job.command or "",
            what=self.what,
            unit=self.unit,
            total=self.total,
            done=self.done,
            epoch=self.epoch,
            epochs=self.epochs,
            images_per_s=self.images_per_s,
            losses=tuple(self.losses),
            epoch_rows=tuple(self.epoch_rows),
            variants=tuple(self.variants),
            cells=tuple(self.cells),
            message=self.message,
            result=self.result,
            seconds=self.seconds,
            elapsed=elapsed,
            eta=eta,
            rate=rate,
            log_tail=tail,
            info=self.info,
            grid=self.grid,
        )

    def _poll_grid(self, job: Any) -> None:
        """Read where each cell of a grid job stands (at most every GRID_POLL_S, and once more at its end)."""
        from reuse_console.engine.grids.status import grid_status
        from reuse_console.engine.jobs.resume import grid_of
        from reuse_console.store.lab import Lab

        now = time.monotonic()
        if self._grid_final or (job.status == "running" and now - self._grid_read < GRID_POLL_S):
            return
        self._grid_read, self._grid_final = now, job.status != "running"
        if self._study is None:
            self._study = grid_of(job)
        if self._study is None:
            return
        study, experiment = self._study
        lab = Lab(job.events_path.parent.parent)
        self.grid = tuple(grid_status(lab, study, experiment, grid_running=job.status == "running"))


def loss_line(losses: tuple[float, ...], width: int) -> Text:
    """`loss 0.4321 ▇▆▅▄▃▃▂▂▁` scaled to the shown window's min..max (log-free, last `width` points)."""
    text = Text("loss ", style="bold")
    if not losses:
        return text.append("-", style="dim")
    text.append(f"{losses[-1]:.4f} ")
    width = max(8, width - len(text))
    if len(losses) > width:  # average into `width` buckets
        step = len(losses) / width
        values = [sum(b) / len(b) for b in (losses[int(i * step) : int((i + 1) * step)] for i in range(width)) if b]
    else:
        values = list(losses)
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    text.append("".join(BARS[1 + round((v - lo) / span * 7)] for v in values), style="cyan")
    return text


def epoch_table(rows: tuple[dict[str, Any], ...], limit: int) -> Table:
    """Val metrics per epoch (Dice per class or MSE/PSNR), newest last."""
    table = Table(box=None, pad_edge=False, expand=False, header_style="bold")
    fixed = ("epoch", "loss", "best", "img/s", "s")
    metric_keys: list[str] = []
    for row in rows:
        metric_keys += [k for k in row if k not in fixed and k not in metric_keys]
    for col in ("epoch", "loss", *metric_keys, "img/s", "s"):
        table.add_column(col, justify="right")
    for row in rows[-limit:]:
        cells = [f"{row['epoch']}{'*' if row.get('best') else ' '}", f"{row['loss']:.4f}"]
        for key in metric_keys:
            value = row.get(key)
            cells.append("-" if value is None else (f"{value:.2f}" if key == "psnr" else f"{value:.3f}"))
        cells += [f"{row['img/s']:.0f}", f"{row['s']:.1f}"]
        table.add_row(*cells)
    return table


def variant_table(variants: tuple[VariantDone, ...], limit: int) -> Table:
    """The latest scan variants and their Dice per class."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    classes: list[str] = []
    for v in variants:
        classes += [c for c in v.dice if c not in classes]
    for col in ("#", "layer", "kind", "alpha", *classes):
        table.add_column(col, justify="right")
    for v in variants[-limit:]:
        table.add_row(
            str(v.index), str(v.layer), v.kind, f"{v.alpha:g}", *(f"{v.dice.get(c, math.nan):.3f}" for c in classes)
        )
    return table


STATUS_STYLE = {
    "running": "bold cyan",
    "finished": "bold green",
    "failed": "bold red",
    "cancelled": "yellow",
    "lost": "red",
}
CELL_STYLE = {
    "queued": "dim",
    "running": "bold cyan",
    "requeued": "yellow",
    "done": "green",
    "failed": "bold red",
    "stopped": "yellow",
}


def cells_line(cells: tuple[CellStatus, ...]) -> Text:
    """`cells 3 done  1 running  8 queued` (states with no cell left out)."""
    text = Text("cells ", style="bold")
    for state, n in counts(list(cells)).items():
        if n:
            text.append(f"{n} {state}", style=CELL_STYLE.get(state, ""))
            text.append("  ")
    return text


def cells_table(cells: tuple[CellStatus, ...], limit: int) -> Table:
    """A window of `limit` cells around the first one not done (the running cell in view)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("cell", no_wrap=True, overflow="ellipsis")
    table.add_column("state", no_wrap=True)
    table.add_column("epoch", justify="right", no_wrap=True)
    table.add_column("Dice", justify="right", no_wrap=True)
    focus = next((i for i, c in enumerate(cells) if c.state == "running"), None)
    if focus is None:
        focus = next((i for i, c in enumerate(cells) if c.state != "done"), len(cells) - 1)
    start = max(0, min(focus - 1, len(cells) - limit))
    for c in cells[start : start + limit]:
        epoch = f"{c.epoch}/{c.epochs}" if c.state != "queued" or c.epoch else "-"
        dice = "-" if c.dice_fg is None else f"{c.dice_fg:.3f}"
        state = Text(c.state, style=CELL_STYLE.get(c.state, ""))
        if c.node and c.state in ("running", "requeued", "failed"):
            state.append(f" {c.node}", style="dim")  # a cluster cell's node
        table.add_row(c.name, state, epoch, dice)
    return table


def render_snapshot(snap: JobSnapshot, width: int, height: int, system: str = "") -> RenderableType:
    """The live view of one job, fitted to `width` x `height` cells."""
    parts: list[RenderableType] = []
    head = Text.assemble((snap.id, "bold"), "  ", (snap.status, STATUS_STYLE.get(snap.status, "")))
    if snap.what:
        head.append(f"  {snap.what}")
    device = snap.info.get("device")
    if device:
        head.append(f"  {device} {snap.info.get('precision', '')}", style="dim")
    parts.append(head)
    parts.append(Text(f"$ {snap.command}", style="dim", overflow="ellipsis", no_wrap=True))
    bar_width = max(10, width - 28)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(
            total=max(snap.total, 1),
            completed=snap.done,
            width=bar_width,
            complete_style="green",
            finished_style="green",
        ),
        Text(f"{snap.fraction * 100:5.1f}%  {snap.done}/{snap.total or '?'} {snap.unit}"),
    )
    parts.append(bar)
    facts = []
    if snap.epochs:
        facts.append(f"epoch {snap.epoch}/{snap.epochs}")
    if snap.images_per_s:
        facts.append(f"{snap.images_per_s:.0f} img/s")
    elif snap.rate:
        facts.append(f"{snap.rate:.2f} {snap.unit}/s")
    facts.append(f"elapsed {duration(snap.elapsed)}")
    if snap.status == "running":
        facts.append(f"ETA {duration(snap.eta)}")
    if snap.result:
        facts.append(f"result {snap.result} (o opens)")
    parts.append(Text("  ".join(facts)))
    used = 4
    if snap.losses:
        parts.append(loss_line(snap.losses, width))
        used += 1
    room = max(0, height - used - (2 if system else 0) - 2)
    if snap.grid and room:
        parts.append(cells_line(snap.grid))
        parts.append(cells_table(snap.grid, max(1, room - 2)))
    elif snap.epoch_rows and room:
        parts.append(Text(""))
        parts.append(epoch_table(snap.epoch_rows, max(1, room - 1)))
    elif snap.variants and room:
        parts.append(Text(""))
        parts.append(variant_table(snap.variants, max(1, room - 1)))
    elif snap.message:
        parts.append(Text(snap.message, style="dim"))
    if snap.log_tail:
        parts.append(Text("log (last lines):", style="bold red"))
        parts.extend(
            Text(line, style="dim", no_wrap=True, overflow="ellipsis") for line in snap.log_tail[-max(1, room) :]
        )
    if system:
        parts.append(Text(""))
        parts.append(Text(system, style="dim"))
    return Group(*parts)


class JobView(Static):
    """The live view of the selected job; re-rendered at most once per poll."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.snapshot: JobSnapshot | None = None
        self.system = ""

    def show(self, snapshot: JobSnapshot | None, system: str = "", hint: str = "") -> None:
        self.snapshot, self.system = snapshot, system
        if snapshot is None:
            self.update(Text(hint, style="dim"))
            return
        self.update(render_snapshot(snapshot, self.size.width or 80, self.size.height or 14, system))

    def on_resize(self) -> None:
        if self.snapshot is not None:
            self.update(render_snapshot(self.snapshot, self.size.width, self.size.height, self.system))
