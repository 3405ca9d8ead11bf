"""The help screen (`?` or F1): the current screen's keys, read from its live bindings so the list
never drifts from the code, and a paragraph on what the screen shows.

A screen says what it shows in a `HELP` class attribute; the screens that predate it are
described here (`ABOUT`), and any other falls back to its docstring.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT: dict[str, str] = {
    "LabScreen": (
        "Every object of the lab, one tab per kind (data sets, checkpoints, runs, scans, RMSE "
        "comparisons, reuse plans, grids, jobs). Type to filter every tab at once. Enter opens the "
        "object: a checkpoint's layers, a scan in the Scan view, and a view of its own for a grid "
        "(Table 3), a plan (the editable map), a run (epochs) and a comparison (pair or matrix)."
    ),
    "LayersScreen": (
        "A checkpoint's layers in the study's numbering, each with its conv and norm tensors and their "
        "statistics and histograms; compared with a second checkpoint, the RMSE of each tensor inline."
    ),
    "SwapScreen": (
        "Swap tensors of a donor into a recipient and see Dice move: tick kinds per layer, set alpha, "
        "Enter evaluates on the validation subjects in the background. Results stack in the history; "
        "Ctrl+S stores the shown one as a one-variant scan."
    ),
    "ScanScreen": (
        "A scan as a layer x kind table of mean foreground Dice after each single swap, coloured by the "
        "drop from the baseline, and per-class charts of Dice against layer; comparisons as relative "
        "RMSE; the BN view as scale ratio and shift change."
    ),
    "JobsScreen": (
        "Long work (training, scans, grids) runs as detached reuse-console processes that survive the "
        "console and the SSH link. The table lists them; the view below follows the selected one live."
    ),
}


@dataclass(frozen=True)
class KeyRow:
    """One binding as the help lists it."""

    keys: str
    description: str
    where: str  # "this screen", "everywhere", or the focused widget's kind
    binding_id: str
    action: str = ""
    node: Any = field(default=None, compare=False, repr=False)  # where the action runs


def screen_about(screen: Any) -> str:
    """What `screen` shows, in words."""
    about = getattr(screen, "HELP", "") or ABOUT.get(type(screen).__name__, "")
    if not about:
        about = " ".join((type(screen).__doc__ or "").split())
    return about


def key_rows(screen: Any) -> list[KeyRow]:
    """The console's bindings on `screen` now (screen, focused widget, app), one row per binding,
    a key the focused widget shadows included; Textual's own (focus next, copy) are left out."""
    app = screen.app
    grouped: dict[tuple[int, int], tuple[Any, Binding, list[str]]] = {}
    for node, bindings in screen._modal_binding_chain:  # what `active_bindings` walks, unshadowed
        for key, binding in bindings:
            if binding.system or not binding.id or app._check_action_state(binding.action, node) is False:
                continue
            slot = (id(node), id(binding))
            if slot not in grouped:
                grouped[slot] = (node, binding, [])
            grouped[slot][2].append(app.get_key_display(Binding(key, binding.action)))
    rows = []
    for node, binding, keys in grouped.values():
        where = "everywhere" if node is app else "this screen" if node is screen else type(node).__name__
        description = binding.description or binding.tooltip or binding.action
        keys_text = " ".join(dict.fromkeys(keys))
        rows.append(KeyRow(keys_text, description, where, binding.id or "", binding.action, node))
    order = {"this screen": 0, "everywhere": 2}
    return sorted(rows, key=lambda r: order.get(r.where, 1))


def help_body(title: str, about: str, rows: Iterable[KeyRow]) -> Group:
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_header=True, header_style="bold")
    for col in ("key", "does", "where"):
        table.add_column(col, no_wrap=col != "does", overflow="fold")
    for row in rows:
        table.add_row(Text(row.keys, style="bold"), row.description, Text(row.where, style="dim"))
    return Group(Text(title, style="bold"), Text(about), Text(""), table)


class HelpScreen(ModalScreen[None]):
    """Keys and meaning of the screen under it; any of Esc, q, ? or F1 closes it."""

    BINDINGS: ClassVar = [Binding("escape,q,?,f1", "dismiss", "Close", id="help.close")]

    def __init__(self, title: str, about: str, rows: list[KeyRow]) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.about = about
        self.rows = rows

    @classmethod
    def for_screen(cls, screen: Any) -> HelpScreen:
        name = type(screen).__name__.removesuffix("Screen").removesuffix("Modal") or "Console"
        return cls(f"{name}: keys and what it shows", screen_about(screen), key_rows(screen))

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="modal-box"):
            with VerticalScroll(id="help-scroll"):
                yield Static(help_body(self.title_text, self.about, self.rows), id="help-body")
            yield Static("Esc closes   Ctrl+P: every command by name", classes="modal-hint")

    DEFAULT_CSS = """
    #help-box { height: 90%; }
    #help-scroll { height: 1fr; }
    """

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Help"
        self.query_one("#help-scroll").focus()
