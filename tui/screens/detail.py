"""A modal with one object's attributes and datasets, for kinds that have no view of their own
(data sets: classes, size and splits as `reuse-console show` prints them, then the file).

Values are written for people: floats to four significant digits, JSON attributes compact with
their floats rounded the same way, so no `2.2065603733062744` reaches the screen.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from rich.console import Group, RenderableType
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

from .base import WorkerErrors


def human(value: Any) -> Any:
    """`value` with every float rounded to 4 significant digits (nested lists and dicts too)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: human(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [human(v) for v in value]
    return value


def human_text(value: Any) -> str:
    """One attribute value as text: strings as they are, numbers rounded, structures as compact JSON."""
    value = human(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return f"{value:g}" if isinstance(value, float) else str(value)


def detail_table(info: dict[str, Any]) -> Table:
    """Attributes first, then up to 40 datasets with shape and dtype."""
    table = Table(show_header=False, box=None, expand=True, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in info["attrs"].items():
        table.add_row(key, human_text(value))
    table.add_row("", "")
    table.add_row("datasets", str(info["dataset_count"]))
    for item in info["datasets"][:40]:
        shape = "x".join(map(str, item["shape"])) or "scalar"
        table.add_row(item["path"], f"{shape} {item['dtype']}")
    return table


def read_detail(lab: Lab, kind: str, obj_id: str) -> RenderableType:
    """What the box shows (file reads: worker thread only)."""
    path = lab.path(kind, obj_id)
    attributes = detail_table(describe(path))
    if kind == "datasets":
        from reuse_console.engine.data.slices import read_dataset_info

        from ..render.objects import render_dataset

        return Group(render_dataset(read_dataset_info(path, obj_id)), Text(""), attributes)
    return attributes


class DetailModal(WorkerErrors, ModalScreen[None]):
    """Shows `reuse-console show KIND/ID` in a box (read in a thread)."""

    BINDINGS: ClassVar = [Binding("escape,q,enter", "dismiss", "Close", id="detail.close")]

    class Described(Message):
        def __init__(self, body: RenderableType) -> None:
            super().__init__()
            self.body = body

    def __init__(self, lab: Lab, kind: str, obj_id: str) -> None:
        super().__init__(classes="modal")
        self.lab = lab
        self.kind = kind
        self.obj_id = obj_id

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box", classes="modal-box"):
            with VerticalScroll():
                yield Static(Text(f"reading {self.kind[:-1]} {self.obj_id}...", style="yellow"), id="detail-body")
            yield Static(f"reuse-console show {self.kind}/{self.obj_id}    Esc closes", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#detail-box").border_title = f"{self.kind[:-1]} {self.obj_id}"
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="detail", name="reading the object")
    def read(self) -> None:
        self.post_message(self.Described(read_detail(self.lab, self.kind, self.obj_id)))

    @on(Described)
    def _described(self, message: Described) -> None:
        self.query_one("#detail-body", Static).update(message.body)
