"""A modal with one object's attributes and datasets, for kinds that have no screen of their own."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from reuse_console.store.inspect import describe
from reuse_console.store.lab import Lab

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
        self.post_message(self.Described(describe(self.lab.path(self.kind, self.obj_id))))

    @on(Described)
    def _described(self, message: Described) -> None:
        self.query_one("#detail-body", Static).update(detail_table(message.info))
