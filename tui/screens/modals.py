"""Small modal screens shared by every screen: an error box and a yes/no confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class ErrorModal(ModalScreen[None]):
    """A failure from a worker or a bad input: one clear line, details below, any key closes."""

    BINDINGS = [Binding("escape,enter,q", "dismiss", "Close", id="modal.close")]

    def __init__(self, title: str, message: str, detail: str = "") -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.message = message
        self.detail = detail

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box", classes="modal-box"):
            yield Static(self.message, id="error-message", markup=False)
            if self.detail:
                with VerticalScroll(id="error-detail-scroll"):
                    yield Static(self.detail, id="error-detail", markup=False)
            yield Static("Enter or Esc closes", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#error-box").border_title = self.title_text


class ConfirmModal(ModalScreen[bool]):
    """Ask before doing something that cannot be undone (cancel a job); y confirms, n/Esc does not."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, title: str = "Confirm") -> None:
        super().__init__(classes="modal")
        self.question = question
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Static(self.question, id="confirm-question", markup=False)
            yield Static("y yes   n / Esc no", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-box").border_title = self.title_text

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
