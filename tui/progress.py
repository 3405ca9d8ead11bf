"""Render engine events: a rich progress bar on stderr, or JSON lines on stdout."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from reuse_console.engine.core.events import (
    CellDone,
    EpochEnd,
    Event,
    Finished,
    Message,
    Progress,
    Reporter,
    Started,
    StepEnd,
    VariantDone,
)
from reuse_console.store.errors import UserError

from .output import stderr

MODES = ("rich", "jsonl", "none")


def _jsonl(event: Event) -> None:
    sys.stdout.write(event.to_json() + "\n")
    sys.stdout.flush()


class RichReporter:
    """One bar per `Started` event; epochs and variants printed as lines above it."""

    def __init__(self, progress: RichProgress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def __call__(self, event: Event) -> None:
        p = self.progress
        if isinstance(event, Started):
            if self.task is not None:
                p.remove_task(self.task)
            self.task = p.add_task(event.what, total=event.total, status="")
        elif isinstance(event, StepEnd) and self.task is not None:
            p.update(
                self.task,
                completed=event.global_step,
                status=f"epoch {event.epoch} loss {event.loss:.4f} {event.images_per_s:.0f} img/s",
            )
        elif isinstance(event, EpochEnd):
            val = " ".join(f"{k} {v:.3f}" for k, v in event.val.items())
            star = " *best" if event.best else ""
            p.console.print(
                f"epoch {event.epoch}/{event.epochs}  loss {event.train_loss:.4f}  {val}  "
                f"{event.images_per_s:.0f} img/s  {event.seconds:.1f}s{star}"
            )
        elif isinstance(event, VariantDone) and self.task is not None:
            dice = " ".join(f"{k} {v:.3f}" for k, v in event.dice.items())
            p.update(self.task, completed=event.index, status=f"L{event.layer} {event.kind} a={event.alpha:g} {dice}")
        elif isinstance(event, CellDone) and self.task is not None:
            dice = " ".join(f"{k} {v:.3f}" for k, v in event.dice.items())
            p.console.print(f"cell {event.index}/{event.total} {event.cell}: {dice}")
            p.update(self.task, completed=event.index)
        elif isinstance(event, Progress) and self.task is not None:
            p.update(self.task, completed=event.done, total=event.total, status=event.text)
        elif isinstance(event, Message):
            p.console.print(event.text)
        elif isinstance(event, Finished) and self.task is not None:
            task = p.tasks[[t.id for t in p.tasks].index(self.task)]
            p.update(self.task, completed=task.total or 0)


@contextmanager
def make_reporter(mode: str) -> Iterator[Reporter]:
    """A reporter for the chosen mode; rich falls back to plain lines when stderr is no terminal."""
    if mode not in MODES:
        raise UserError(f"unknown --progress {mode!r}: use rich, jsonl or none")
    if mode == "jsonl":
        yield _jsonl
        return
    if mode == "none":
        yield lambda event: None
        return
    progress = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=stderr,
        transient=False,
        refresh_per_second=4,
    )
    with progress:
        try:
            yield RichReporter(progress)
        except UserError:
            progress.live.transient = True  # a refused command leaves its error line alone, not a half bar
            raise
