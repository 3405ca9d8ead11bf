"""The Run view (Enter on a run in the Lab): what the run trains, loss and Dice sparklines over its
epochs, and the epoch table, read again every poll while the run is still training.

The run file is read in a worker (SWMR: safe while the training appends); the table and status
are `reuse-console show RUN`'s (tui/render/objects.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from ..render.objects import render_run
from ..render.sparks import spark_line
from ..widgets.job_view import loss_line
from .result import ResultScreen

LIVE = ("running",)


def epoch_series(history: Any) -> list[tuple[str, list[float | None], float]]:
    """(label, value per epoch, top of scale) of every validation metric the run records."""
    out = []
    present = dict(zip(history.meta.get("classes", []), history.meta.get("present", [])))
    for column, values in history.epochs.items():
        if not column.startswith("val_"):
            continue
        label = column.removeprefix("val_dice_").removeprefix("val_").replace("background", "bg")
        if column.startswith("val_dice_") and not present.get(label, True):
            continue
        series = [None if v != v else float(v) for v in values]
        finite = [v for v in series if v is not None]
        top = 1.0 if column.startswith("val_dice") else max(finite, default=1.0)
        out.append((f"Dice {label}" if column.startswith("val_dice") else label.upper(), series, top))
    return out


def run_body(run_id: str, history: Any, width: int) -> Group:
    """Loss over steps, each metric over epochs (Dice on 0..1), then the epoch table."""
    losses = tuple(float(v) for v in history.steps.get("loss", ()))
    parts: list[Any] = [loss_line(losses, max(20, width - 2))]
    label_w = 14
    cell = max(1, min(3, (width - label_w - 10) // max(1, history.n_epochs)))
    for label, values, top in epoch_series(history):
        last = next((v for v in reversed(values) if v is not None), None)
        note = (
            "-"
            if last is None
            else f"{last:.2f} dB"
            if label == "PSNR"
            else f"{last:.4g}"
            if label == "MSE"
            else f"{last:.3f}"
        )
        parts.append(spark_line(label, values, top, label_width=label_w, cell=cell, note=note))
    parts += [Text(""), render_run(run_id, history)]
    return Group(*parts)


class RunScreen(ResultScreen):
    """One training run, finished or live."""

    KIND = "runs"
    HELP = (
        "One training run: the loss over steps (scaled to its own range), each validation metric over "
        "epochs (Dice per class on 0 to 1, or MSE/PSNR for an auto-encoder), then a row per finished "
        "epoch (* marks the best epoch, the one the checkpoint keeps) and the run's status. A run that "
        "is still training is read again every few seconds; a stopped one says how to resume it. "
        "o opens the run's checkpoint in Layers."
    )
    BINDINGS: ClassVar = [Binding("o", "open_checkpoint", "Checkpoint", id="run.open_checkpoint")]
    DEFAULT_CSS = """
    #run-scroll { height: 1fr; padding: 0 1; }
    #view-head { height: auto; max-height: 2; padding: 0 1; }
    """

    def compose_view(self) -> ComposeResult:
        with VerticalScroll(id="run-scroll"):
            yield Static("", id="run-body")

    def on_mount(self) -> None:
        """Start the re-read timer (Textual runs ResultScreen.on_mount too, which reads the file)."""
        self.set_interval(max(1.0, self.console.config.job_poll_s * 4), self._poll, name="run poll")

    def _poll(self) -> None:
        if self.data is not None and self.data.status in LIVE:
            self.load()

    def read(self) -> Any:
        from reuse_console.store.runs import read_run

        return read_run(self.console.lab.resolve(self.obj_id, "runs").path)

    def show(self, history: Any) -> None:
        m = history.meta
        head = Text.assemble(("run ", "dim"), (self.obj_id, "bold"), f"  {m.get('task', '?')} on {m.get('data', '?')}")
        head.append(f"  {history.status}", style="bold cyan" if history.status in LIVE else "dim")
        self.set_head(head)
        self._draw()
        if self.focused is None:
            self.query_one("#run-scroll").focus()

    def _draw(self) -> None:
        if self.data is not None:
            width = max(40, (self.size.width or 80) - 4)
            self.query_one("#run-body", Static).update(run_body(self.obj_id, self.data, width))

    def on_resize(self) -> None:
        self._draw()

    def action_open_checkpoint(self) -> None:
        checkpoint = (self.data.meta.get("checkpoint") if self.data is not None else None) or None
        if checkpoint:
            self.console.open_layers(checkpoint)
        else:
            self.notify("This run has no checkpoint yet.", severity="warning")

    def palette_commands(self):
        yield ("Run: open its checkpoint", "Open the run's best checkpoint in Layers", self.action_open_checkpoint)
