"""What the result views (experiment, plan, run, comparison) share: pushed over the Lab, a head line
that says what is loading, one thread worker that reads the object, and Esc to go back.

A view reads its file in `read()` (worker thread: HDF5 and the engine's imports never run on the
UI thread) and gets the result back in `show()` on the UI thread.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from .base import ConsoleScreen


class ResultScreen(ConsoleScreen):
    """A lab object's view, pushed on top of the screen that opened it."""

    MODE = "lab"
    KIND: ClassVar[str] = ""  # the lab folder: "experiments", "plans", "runs", "comparisons"
    HELP: ClassVar[str] = ""
    BINDINGS: ClassVar = [Binding("escape", "back", "Back", id="view.back")]

    class Read(Message):
        """The object was read (and arranged for the screen) in the worker."""

        def __init__(self, data: Any) -> None:
            super().__init__()
            self.data = data

    def __init__(self, obj_id: str) -> None:
        super().__init__()
        self.obj_id = obj_id
        self.data: Any = None

    def compose_body(self) -> ComposeResult:
        yield Static(Text(f"reading {self.KIND[:-1]} {self.obj_id}...", style="yellow"), id="view-head")
        yield from self.compose_view()

    def compose_view(self) -> ComposeResult:
        """The view's widgets under the head line."""
        return iter(())

    def on_mount(self) -> None:
        self.set_note(f"{self.KIND[:-1]} {self.obj_id}")
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="view-read", name="reading the object")
    def load(self) -> None:
        self.post_message(self.Read(self.read()))

    def read(self) -> Any:
        """Read and arrange the object (worker thread)."""
        raise NotImplementedError

    @on(Read)
    def _read(self, message: Read) -> None:
        self.data = message.data
        self.show(message.data)

    def show(self, data: Any) -> None:
        """Fill the widgets (UI thread)."""

    def set_head(self, text: Text | str) -> None:
        self.query_one("#view-head", Static).update(text)

    def worker_failed(self, worker: Any) -> None:
        if self.data is None:
            self.set_head(Text(f"could not read {self.KIND[:-1]} {self.obj_id} (Esc: back)", style="red"))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
