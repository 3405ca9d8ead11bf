"""What every top-level screen shares: the nav bar, the footer, and the one worker-error handler."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, Callable, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from reuse_console.store.errors import UserError

from ..widgets.nav import NavBar
from .modals import ErrorModal

if TYPE_CHECKING:
    from ..app import ConsoleApp

PaletteCommand = tuple[str, str, Callable[[], object]]


def describe_error(error: BaseException) -> tuple[str, str]:
    """One line for the user and, for unexpected errors, the traceback below it."""
    if isinstance(error, UserError):
        return str(error), ""
    line = f"{type(error).__name__}: {error}"
    detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return line, detail


class WorkerErrors:
    """Mixin for screens that start workers: the one handler that turns failures into a modal.

    Workers are attached to the screen that starts them and `Worker.StateChanged` does not
    bubble, so every such screen mixes this in instead of handling errors per worker.
    """

    def show_error(self, title: str, error: BaseException) -> None:
        """Open the error modal for `error`."""
        line, detail = describe_error(error)
        self.app.push_screen(ErrorModal(title, line, detail))  # type: ignore[attr-defined]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.error is not None:
            self.worker_failed(worker)
            self.show_error(f"{worker.name or 'background task'} failed", worker.error)

    def worker_failed(self, worker: Worker) -> None:
        """Hook for screens to reset their busy state when one of their workers fails."""


class ConsoleScreen(WorkerErrors, Screen[None]):
    """A top-level screen (one per mode). Subclasses compose their body in `compose_body`."""

    MODE: ClassVar[str] = ""

    @property
    def console(self) -> ConsoleApp:
        """The app, typed."""
        return cast("ConsoleApp", self.app)

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE, self.console.lab_label)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's content between the nav bar and the footer."""
        return iter(())

    def set_note(self, note: str) -> None:
        """Say in the nav bar what this screen shows."""
        self.query_one(NavBar).set_note(note)

    def palette_commands(self) -> Iterable[PaletteCommand]:
        """Commands this screen offers in the command palette: (name, help, callback)."""
        return ()
