"""A modal to choose one lab object (a checkpoint, a data set, a scan): type to filter, Enter picks."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from reuse_console.store.lab import Lab

from ..widgets.inputs import ConsoleInput

Choice = tuple[str, str]  # (id, one-line description)


class Choices(Message):
    """Lab objects to pick from, listed by a screen's worker thread; `purpose` says which pick
    they are for ("open", "compare", "recipient", "donor", "data") when a screen has several."""

    def __init__(self, purpose: str, choices: list[Choice]) -> None:
        super().__init__()
        self.purpose = purpose
        self.choices = choices


class PickModal(ModalScreen[str | None]):
    """Dismisses with the chosen id, or None on Esc."""

    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel", id="pick.cancel"),
        Binding("down", "move(1)", show=False, id="pick.down"),
        Binding("up", "move(-1)", show=False, id="pick.up"),
    ]

    def __init__(self, title: str, choices: list[Choice], current: str | None = None, empty: str = "") -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.choices = choices
        self.current = current
        self.empty = empty or "nothing to choose from"

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box", classes="modal-box"):
            yield ConsoleInput(placeholder="type to filter", id="pick-filter", compact=True, select_on_focus=False)
            yield OptionList(id="pick-options")
            yield Static("Enter picks   Esc cancels", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#pick-box").border_title = self.title_text
        self._fill("")
        self.query_one("#pick-filter", Input).focus()

    def _fill(self, text: str) -> None:
        words = text.lower().split()
        options = self.query_one("#pick-options", OptionList)
        options.clear_options()
        shown = [(i, d) for i, d in self.choices if all(w in f"{i} {d}".lower() for w in words)]
        if not shown:
            options.add_option(Option(self.empty if not self.choices else "no match", disabled=True))
            return
        width = min(48, max(len(i) for i, _ in shown))  # ids aligned however long (the grid's cells)
        options.add_options(Option(f"{i:<{width}}  {d}", id=i) for i, d in shown)
        ids = [i for i, _ in shown]
        options.highlighted = ids.index(self.current) if self.current in ids else 0

    @on(Input.Changed, "#pick-filter")
    def _changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#pick-filter")
    def _submitted(self) -> None:
        options = self.query_one("#pick-options", OptionList)
        if options.highlighted is not None:
            option = options.get_option_at_index(options.highlighted)
            if option.id is not None:
                self.dismiss(option.id)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        options = self.query_one("#pick-options", OptionList)
        if step > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()

    def action_cancel(self) -> None:
        self.dismiss(None)


def entry_choices(entries: list[Any]) -> list[Choice]:
    """Choices from lab entries, described as the Lab tables describe them."""
    from .lab import entry_row

    out: list[Choice] = []
    for entry in entries:
        if entry.error:
            continue
        row = entry_row(entry)
        out.append((entry.id, "  ".join(c for c in row.cells[1:-1] if c)))
    return out


def suggest_pair(lab: Lab) -> tuple[str, str] | None:
    """The best seg recipient and a donor built the same way (arch and config), an ae one first.

    Reads checkpoint metadata: call from a worker thread.
    """
    from reuse_console.store.checkpoints import read_meta

    entries = [e for e in lab.entries("checkpoints") if e.ok and not e.id.endswith(".last")]
    metas = {e.id: read_meta(e.path) for e in entries}

    def dice(ref: str) -> float:
        value = metas[ref].metrics.get("dice_fg")
        return float(value) if isinstance(value, (int, float)) else -1.0

    for rec_id in sorted(metas, key=lambda ref: -dice(ref)):  # the best segmentation model first
        rec = metas[rec_id]
        if rec.task != "seg":
            continue
        same = [i for i, m in metas.items() if i != rec_id and m.arch == rec.arch and m.arch_config == rec.arch_config]
        same.sort(key=lambda i: (metas[i].task != "ae", metas[i].data != rec.data))
        if same:
            return rec_id, same[0]
    return None
