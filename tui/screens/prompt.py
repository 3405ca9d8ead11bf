"""A one-line question (alpha, a name to save under): Enter answers, Esc cancels."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from ..widgets.inputs import ConsoleInput


class PromptModal(ModalScreen[str | None]):
    """Dismisses with the typed text, or None on Esc."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, question: str, value: str = "") -> None:
        super().__init__(classes="modal")
        self.question = question
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box", classes="modal-box"):
            yield ConsoleInput(value=self.value, id="prompt-input", compact=True)
            yield Static("Enter answers   Esc cancels", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#prompt-box").border_title = self.question
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
