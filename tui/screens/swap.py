"""The Swap lab: pick recipient, donor and data set, toggle layer kinds, evaluate, compare, save.

An `engine.session.SwapSession` keeps both models and the validation batches loaded; every
evaluation runs in a thread worker (the UI keeps responding) and comes back as a message with
the engine's `SwapOutcome`. The screen only keeps which (layer, kind) pairs are ticked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from reuse_console.engine.core.names import REINIT_DONORS

from ..widgets.charts import drop_style
from ..widgets.swap_tables import LayerTable, dice_table, subject_table
from .base import ConsoleScreen
from .pick import Choices, PickModal, entry_choices, suggest_pair
from .prompt import PromptModal

if TYPE_CHECKING:  # the console starts without torch: the engine is loaded by the worker that opens a session
    from rich.console import Group

    from reuse_console.engine.models.layers import Layer

KIND_GROUP = Binding.Group("kinds", compact=True)
KIND_KEYS = (("m", "RM"), ("v", "RV"), ("w", "RW"), ("b", "RB"), ("W", "W"), ("B", "B"))


class SwapScreen(ConsoleScreen):
    """Try swap sets on a loaded recipient/donor pair and keep the history of this session."""

    MODE = "swap"
    BINDINGS: ClassVar = [
        *(Binding(key, f"tick('{kind}')", kind, id=f"swap.toggle.{kind}", group=KIND_GROUP) for key, kind in KIND_KEYS),
        Binding("space", "toggle_layer", "All kinds", show=False, id="swap.toggle_layer"),
        Binding("x", "clear", "Clear", id="swap.clear"),
        Binding("a", "alpha", "Alpha", id="swap.alpha"),
        Binding("f", "full_forward", "Full forward", show=False, id="swap.full_forward"),
        Binding("c", "recalibrate", "Recalibrate", show=False, id="swap.recalibrate"),
        Binding("r", "pick('recipient')", "Recipient", show=False, id="swap.recipient"),
        Binding("d", "pick('donor')", "Donor", show=False, id="swap.donor"),
        Binding("t", "pick('data')", "Data set", show=False, id="swap.data"),
        Binding("ctrl+s", "save", "Save", id="swap.save"),
    ]

    class Opened(Message):
        def __init__(self, session: Any) -> None:
            super().__init__()
            self.session = session

    class Evaluated(Message):
        def __init__(self, outcome: Any) -> None:
            super().__init__()
            self.outcome = outcome

    class Saved(Message):
        def __init__(self, ref: str) -> None:
            super().__init__()
            self.ref = ref

    def __init__(self) -> None:
        super().__init__()
        self.session: Any = None
        self.recipient: str | None = None
        self.donor: str | None = None
        self.data: str | None = None
        self.alpha = 1.0
        self.ticked: set[tuple[str, str]] = set()
        self.busy = ""
        self.last: Any = None
        self._preset = False

    def compose_body(self) -> ComposeResult:
        yield Static("", id="swap-head")
        with Horizontal(id="swap-main"):
            yield LayerTable(id="swap-layers", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="swap-side"):
                yield Static("", id="swap-result")
        yield DataTable(id="swap-history", cursor_type="row")

    def on_mount(self) -> None:
        history = self.query_one("#swap-history", DataTable)
        for col, width in (("#", 3), ("swap", 34), ("fg Dice", 8), ("Δ fg", 8), ("s", 6)):
            history.add_column(col, key=col, width=width)
        self._head()
        self.query_one("#swap-result", Static).update(
            Text(
                "r recipient, d donor, t data set. Then walk the layers with ↑↓, tick kinds with "
                "m v w b (RM RV RW RB) and W B (conv), a sets alpha, Enter evaluates.",
                style="dim",
            )
        )
        if not self._preset:
            self.auto_pick()

    # -- choosing the models -------------------------------------------------------------------

    def preset(self, recipient: str | None, donor: str | None, data: str | None) -> None:
        """Start from a recipient/donor (e.g. from the Layers screen)."""
        self._preset = True
        self.recipient = recipient or self.recipient
        self.donor = donor or self.donor
        self.data = data or self.data
        self._head()
        if self.recipient and self.donor:
            self.open_session()
        elif self.recipient:
            self.action_pick("donor")

    @work(thread=True, exclusive=True, exit_on_error=False, group="swap-list", name="listing checkpoints")
    def auto_pick(self) -> None:
        """Preselect a seg recipient and a donor built the same way (ae first)."""
        pair = suggest_pair(self.console.lab)
        if pair is not None and not self.recipient:
            self.app.call_from_thread(self.preset, pair[0], pair[1], None)

    def action_pick(self, purpose: str) -> None:
        if self.busy:
            self.notify(f"wait: {self.busy}", severity="warning")
            return
        self.list_choices(purpose)

    @work(thread=True, exclusive=True, exit_on_error=False, group="swap-list", name="listing the lab")
    def list_choices(self, purpose: str) -> None:
        kind = "datasets" if purpose == "data" else "checkpoints"
        choices = entry_choices(self.console.lab.entries(kind))
        if purpose == "donor":  # re-initialisation donors, as `swap R init` / `random:SEED`
            choices = [*REINIT_DONORS, *choices]
        self.post_message(Choices(purpose, choices))

    @on(Choices)
    def _choices(self, message: Choices) -> None:
        purpose = message.purpose
        current = {"recipient": self.recipient, "donor": self.donor, "data": self.data}[purpose]

        def chosen(ref: str | None) -> None:
            if ref is None:
                return
            setattr(self, purpose, ref)
            self._head()
            if self.recipient and self.donor:
                self.open_session()

        self.app.push_screen(PickModal(f"Choose the {purpose}", message.choices, current), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="swap-session", name="opening the swap session")
    def open_session(self) -> None:
        """Load recipient, donor and validation batches and compute the baseline (seconds)."""
        from reuse_console.engine.swaps.session import SwapSession

        recipient, donor = self.recipient, self.donor
        if recipient is None or donor is None:  # opened once both are chosen
            return
        self.app.call_from_thread(self._set_busy, f"loading {recipient} and {donor}...")
        session = SwapSession(self.console.lab, recipient, donor, self.data, device="auto")
        self.post_message(self.Opened(session))

    def _set_busy(self, text: str) -> None:
        self.busy = text
        self._head()

    def worker_failed(self, worker: Any) -> None:
        self._set_busy("")

    @on(Opened)
    def _opened(self, message: Opened) -> None:
        self.session = message.session
        self.data = self.session.data
        self.ticked.clear()
        self.last = None
        self.busy = ""
        from reuse_console.engine.models.layers import KINDS  # torch is loaded by now (the session's worker)

        table = self.query_one("#swap-layers", DataTable)
        table.clear(columns=True)
        table.add_column("layer", key="layer", width=5)
        for kind in KINDS:
            table.add_column(kind, key=kind, width=2)
        for layer in self.session.layers:
            table.add_row(*self._layer_cells(layer), key=layer.name)
        self.query_one("#swap-history", DataTable).clear()
        self._add_history(self.session.baseline)
        self._show_result(self.session.baseline)
        self._head()
        self.set_note(f"{self.recipient} ← {self.donor}")
        table.focus()

    def _layer_cells(self, layer: Any) -> list[Any]:
        from reuse_console.engine.models.layers import KINDS

        cells: list[Any] = [Text(layer.name, style="bold")]
        for kind in KINDS:
            if kind not in layer.kinds:
                cells.append("")
            elif (layer.name, kind) in self.ticked:
                cells.append(Text("●", style="bold yellow"))
            else:
                cells.append(Text("·", style="dim"))
        return cells

    def _head(self) -> None:
        text = Text()
        for label, value in (("recipient", self.recipient), ("donor", self.donor), ("data", self.data)):
            text.append(f"{label} ", style="dim")
            shown = value or ("(recipient's)" if label == "data" else "?")
            text.append(f"{shown}  ", style="bold")
        text.append("alpha ", style="dim")
        text.append(f"{self.alpha:g}", style="bold")
        if self.session is not None:
            text.append(f"  {len(self.session.subjects)} {self.session.split} subjects", style="dim")
            if self.session.full_forward:
                text.append("  full forward", style="dim")
            if self.session.recalibrate:
                text.append(f"  recal {self.session.recalibrate}", style="dim")
        if self.busy:
            text.append(f"  {self.busy}", style="yellow")
        self.query_one("#swap-head", Static).update(text)

    # -- ticking kinds -------------------------------------------------------------------------

    def _current_layer(self) -> Layer | None:
        if self.session is None:
            return None
        table = self.query_one("#swap-layers", DataTable)
        if not table.row_count:
            return None
        return self.session.layers[table.cursor_row]

    def _refresh_row(self, layer: Any) -> None:
        from reuse_console.engine.models.layers import KINDS

        table = self.query_one("#swap-layers", DataTable)
        for kind, cell in zip(KINDS, self._layer_cells(layer)[1:]):
            table.update_cell(layer.name, kind, cell)

    def action_tick(self, kind: str) -> None:  # not `toggle`: Textual's DOMNode has that action
        layer = self._current_layer()
        if layer is None:
            return
        if kind not in layer.kinds:
            self.notify(f"layer {layer.name} has no {kind}", severity="warning")
            return
        self.ticked ^= {(layer.name, kind)}
        self._refresh_row(layer)

    def action_toggle_layer(self) -> None:
        layer = self._current_layer()
        if layer is None:
            return
        pairs = {(layer.name, k) for k in layer.kinds}
        self.ticked = self.ticked - pairs if pairs <= self.ticked else self.ticked | pairs
        self._refresh_row(layer)

    def action_clear(self) -> None:
        if self.session is None:
            return
        layers = {name for name, _ in self.ticked}
        self.ticked.clear()
        for layer in self.session.layers:
            if layer.name in layers:
                self._refresh_row(layer)

    def action_alpha(self) -> None:
        def chosen(value: str | None) -> None:
            if value is None:
                return
            try:
                alpha = float(value)
            except ValueError:
                alpha = math.nan
            if not 0.0 <= alpha <= 1.0:
                self.notify(f"alpha {value!r}: use a number from 0 (recipient) to 1 (donor)", severity="error")
                return
            self.alpha = alpha
            self._head()

        self.app.push_screen(PromptModal("Alpha: (1-α)·recipient + α·donor", f"{self.alpha:g}"), chosen)

    def action_full_forward(self) -> None:
        """Run the whole recipient per try (like `swap --full-forward`), or go back to the fast path."""
        if self.session is None:
            self.notify("Choose a recipient (r) and a donor (d) first.", severity="warning")
            return
        self.session.full_forward = not self.session.full_forward
        self._head()

    def action_recalibrate(self) -> None:
        """Also evaluate each try with the norms' statistics re-estimated (like `swap --recalibrate 8`)."""
        if self.session is None:
            self.notify("Choose a recipient (r) and a donor (d) first.", severity="warning")
            return
        from reuse_console.engine.swaps.session import RECALIBRATE_BATCHES  # loaded already with the session

        self.session.recalibrate = None if self.session.recalibrate else RECALIBRATE_BATCHES
        self._head()

    # -- evaluating ----------------------------------------------------------------------------

    def action_evaluate(self) -> None:
        if self.session is None:
            self.notify("Choose a recipient (r) and a donor (d) first.", severity="warning")
            return
        if self.busy:
            self.notify(f"wait: {self.busy}", severity="warning")
            return
        if not self.ticked:
            self.notify("Tick at least one kind (m v w b W B) first.", severity="warning")
            return
        self._set_busy(f"evaluating {len(self.ticked)} tensor(s)...")
        self.evaluate(tuple(self.ticked), self.alpha)

    @work(thread=True, exclusive=False, exit_on_error=False, group="swap-eval", name="evaluating the swap")
    def evaluate(self, targets: tuple[tuple[str, str], ...], alpha: float) -> None:
        self.post_message(self.Evaluated(self.session.evaluate(targets, alpha)))

    @on(Evaluated)
    def _evaluated(self, message: Evaluated) -> None:
        self._set_busy("")
        self._add_history(message.outcome)
        self._show_result(message.outcome)

    def _show_result(self, outcome: Any) -> None:
        self.last = outcome
        title = Text.assemble(
            (f"#{outcome.number} ", "bold"), outcome.describe(), (f"  {self._seconds(outcome)} s", "dim")
        )
        self.query_one("#swap-result", Static).update(
            _group(title, dice_table(outcome, self.session.baseline), Text(""), subject_table(outcome))
        )

    def _seconds(self, outcome: Any) -> str:
        return f"{outcome.seconds:.2f}" if self.console.config.timings else "-"

    def _add_history(self, outcome: Any) -> None:
        history = self.query_one("#swap-history", DataTable)
        base = self.session.baseline.dice_fg
        d = outcome.dice_fg - base
        history.add_row(
            str(outcome.number),
            outcome.describe(),
            f"{outcome.dice_fg:.4f}",
            Text(f"{d:+.4f}", style=drop_style(-d)),
            self._seconds(outcome),
            key=str(outcome.number),
        )
        history.move_cursor(row=history.row_count - 1)

    @on(DataTable.RowHighlighted, "#swap-history")
    def _history_row(self, event: DataTable.RowHighlighted) -> None:
        if self.session is None:
            return
        number = int(str(event.row_key.value))
        outcome = self.session.baseline if number == 0 else self.session.history[number - 1]
        if outcome is not self.last:
            self._show_result(outcome)

    # -- saving --------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.session is None or self.last is None or not self.last.targets:
            self.notify("Evaluate a swap first, then pick it in the history and save.", severity="warning")
            return
        outcome = self.last

        def named(name: str | None) -> None:
            if name is not None:
                self.save(outcome, name.strip() or None)

        self.app.push_screen(PromptModal(f"Save swap #{outcome.number} as (blank: derived)", ""), named)

    @work(thread=True, exclusive=False, exit_on_error=False, group="swap-save", name="saving the swap")
    def save(self, outcome: Any, name: str | None) -> None:
        self.post_message(self.Saved(self.session.save(outcome, name)))

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        self.notify(f"saved {message.ref}", title="swap")

    def palette_commands(self):
        yield ("Swap: choose recipient", "The model whose tensors are replaced", lambda: self.action_pick("recipient"))
        yield ("Swap: choose donor", "The model the tensors come from", lambda: self.action_pick("donor"))
        yield ("Swap: choose data set", "Validation subjects to evaluate on", lambda: self.action_pick("data"))
        yield ("Swap: set alpha", "Interpolate between recipient (0) and donor (1)", self.action_alpha)
        yield ("Swap: save the selected result", "Keep it in the lab", self.action_save)


def _group(*parts: Any) -> Group:
    from rich.console import Group

    return Group(*parts)
