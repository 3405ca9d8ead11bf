"""A modal with one object's attributes and datasets, for kinds that have no screen of their own."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from reuse_console.store.inspect import describe
from reuse_console.store.lab import Lab

from ..widgets.job_view import STATUS_STYLE, epoch_table, loss_line
from .base import WorkerErrors


def detail_table(info: dict[str, Any]) -> Table:
    """Attributes first, then up to 40 datasets with shape and dtype."""
    table = Table(show_header=False, box=None, expand=True, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in info["attrs"].items():
        table.add_row(key, str(value))
    table.add_row("", "")
    table.add_row("datasets", str(info["dataset_count"]))
    for item in info["datasets"][:40]:
        shape = "x".join(map(str, item["shape"])) or "scalar"
        table.add_row(item["path"], f"{shape} {item['dtype']}")
    return table


class DetailModal(WorkerErrors, ModalScreen[None]):
    """Shows `reuse-console show KIND/ID` in a box (read in a thread)."""

    BINDINGS: ClassVar = [Binding("escape,q,enter", "dismiss", "Close", id="detail.close")]

    class Described(Message):
        def __init__(self, info: dict[str, Any]) -> None:
            super().__init__()
            self.info = info

    def __init__(self, lab: Lab, kind: str, obj_id: str) -> None:
        super().__init__(classes="modal")
        self.lab = lab
        self.kind = kind
        self.obj_id = obj_id

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box", classes="modal-box"):
            with VerticalScroll():
                yield Static("reading...", id="detail-body")
            yield Static(f"reuse-console show {self.kind}/{self.obj_id}    Esc closes", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#detail-box").border_title = f"{self.kind[:-1]} {self.obj_id}"
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", name="reading the object")
    def read(self) -> None:
        path = self.lab.path(self.kind, self.obj_id)
        info = describe(path)
        if self.kind == "runs":
            from reuse_console.store.runs import read_run

            info["history"] = read_run(path)
        self.post_message(self.Described(info))

    @on(Described)
    def _described(self, message: Described) -> None:
        body = detail_table(message.info)
        history = message.info.get("history")
        self.query_one("#detail-body", Static).update(run_view(history, body) if history is not None else body)


def run_view(history: Any, attributes: Table) -> Group:
    """A run's status, loss curve and per-epoch validation table, then its attributes."""
    rows = []
    epochs = history.epochs
    for i in range(history.n_epochs):
        row: dict[str, Any] = {
            "epoch": int(epochs["epoch"][i]) if "epoch" in epochs else i + 1,
            "loss": float(epochs["train_loss"][i]) if "train_loss" in epochs else float("nan"),
            "best": bool(epochs["best"][i]) if "best" in epochs else False,
            "img/s": float(epochs["images_per_s"][i]) if "images_per_s" in epochs else float("nan"),
            "s": float(epochs["seconds"][i]) if "seconds" in epochs else float("nan"),
        }
        for key, values in epochs.items():
            if key.startswith("val_"):
                name = key.removeprefix("val_dice_").removeprefix("val_")
                row[name] = None if values[i] != values[i] else float(values[i])
        rows.append(row)
    losses = tuple(float(v) for v in history.steps.get("loss", ()))
    head = Text.assemble(
        ("status ", "dim"),
        (history.status, STATUS_STYLE.get(history.status, "")),
        (f"  {history.n_epochs} epochs, {history.n_steps} steps", "dim"),
    )
    parts: list[Any] = [head, loss_line(losses, 70)]
    if rows:
        parts += [Text(""), epoch_table(tuple(rows), 50)]
    return Group(*parts, Text(""), attributes)
