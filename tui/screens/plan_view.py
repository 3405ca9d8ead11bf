"""The Plan view (Enter on a plan in the Lab): the layer x kind map of a reuse plan, the paper's text
form ("not reusable: RM: 1,17; W: 1,6"), the shares, and editing.

Space (or Enter) on a cell toggles the tensor; `s` saves the edit as a new plan, built the way
`reuse-console plan import` builds one from an exported and edited TOML file (the plan is written
to TOML with the edit and read back), so the stored object is the same.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from ..render.plan_map import PlanMap, map_cell, plan_head, plan_map, plan_summary
from .prompt import PromptModal
from .result import ResultScreen


def edited_plan(plan: Any, reusable: set[tuple[str, str]], name: str) -> Any:
    """`plan` with `reusable` as its reused set, named `name`: through the plan TOML, as `plan import`."""
    from reuse_console.engine.reuse.plan_toml import plan_from_toml, plan_to_toml

    text = plan_to_toml(plan.with_reusable(reusable))
    out = plan_from_toml(text, name=name, source=f"plan {plan.name} as edited")
    out.provenance = {**out.provenance, "source": "edited", "from": plan.name}
    return out


class PlanScreen(ResultScreen):
    """A reuse plan as a map you can edit."""

    KIND = "plans"
    HELP = (
        "A reuse plan: which of the donor's tensors a new model takes over. Rows are layers (the "
        "study's numbering), columns the kinds (RM RV RW RB: BatchNorm running mean, variance, weight, "
        "bias; W B: conv weight, bias). Each cell shows the number that decided it (the worst "
        "foreground Dice drop when that tensor was swapped in, or its RMSE) with ✓ reused (green) or "
        "x not (red). Below: the paper's text form of the non-reused tensors and the share of tensors "
        "and of parameter elements reused. Space toggles the cell under the cursor (edits are "
        "underlined), s stores the edited plan under a new name (as `plan import` would), u undoes "
        "every edit."
    )
    BINDINGS: ClassVar = [
        Binding("space", "toggle_cell", "Toggle", id="plan.toggle"),
        Binding("s", "save", "Save", id="plan.save"),
        Binding("u", "undo", "Undo", id="plan.undo"),
    ]
    DEFAULT_CSS = """
    #plan-map { height: 1fr; }
    #plan-summary { height: auto; max-height: 5; padding: 0 1; background: $boost; }
    #view-head { height: auto; max-height: 2; padding: 0 1; }
    """

    class Saved(Message):
        def __init__(self, name: str, path: str) -> None:
            super().__init__()
            self.name = name
            self.path = path

    def __init__(self, obj_id: str) -> None:
        super().__init__(obj_id)
        self.plan: Any = None
        self.map: PlanMap | None = None
        self.reusable: set[tuple[str, str]] = set()

    def compose_view(self) -> ComposeResult:
        yield DataTable(id="plan-map", cursor_type="cell")
        yield Static("", id="plan-summary")

    def read(self) -> Any:
        from reuse_console.engine.reuse.plans import load_plan

        plan = load_plan(self.console.lab, self.obj_id)
        return plan, plan_map(plan)

    def show(self, data: Any) -> None:
        self.plan, self.map = data
        assert self.map is not None
        self.reusable = set(self.map.original)
        self.set_head(plan_head(self.plan, self.map.evidence))
        table = self.query_one("#plan-map", DataTable)
        table.clear(columns=True)
        table.add_column("layer", key="layer")
        for kind in self.map.columns:
            table.add_column(Text(kind, justify="right"), key=kind)
        for layer in self.map.rows:
            cells = [map_cell(self.map, layer, kind, self.reusable) for kind in self.map.columns]
            table.add_row(Text(layer, style="bold"), *cells, key=layer)
        table.move_cursor(row=0, column=1)
        table.focus()
        self._summary()

    def _summary(self) -> None:
        if self.plan is None or self.map is None:
            return
        changed = len(self.reusable ^ set(self.map.original))
        edited = self.plan.with_reusable(self.reusable)
        self.query_one("#plan-summary", Static).update(plan_summary(edited, changed))

    # -- editing -------------------------------------------------------------------------------

    def action_toggle_cell(self) -> None:
        if self.map is None:
            return
        table = self.query_one("#plan-map", DataTable)
        row, column = table.cursor_coordinate
        if column == 0:
            return
        layer, kind = self.map.rows[row], self.map.columns[column - 1]
        if (layer, kind) not in self.map.values:
            return
        self.reusable ^= {(layer, kind)}
        table.update_cell(layer, kind, map_cell(self.map, layer, kind, self.reusable))
        self._summary()

    @on(DataTable.CellSelected, "#plan-map")
    def _selected(self, event: DataTable.CellSelected) -> None:
        self.action_toggle_cell()

    def action_undo(self) -> None:
        if self.map is None:
            return
        self.reusable = set(self.map.original)
        table = self.query_one("#plan-map", DataTable)
        for layer in self.map.rows:
            for kind in self.map.columns:
                table.update_cell(layer, kind, map_cell(self.map, layer, kind, self.reusable))
        self._summary()

    def action_save(self) -> None:
        if self.plan is None:
            return

        def named(name: str | None) -> None:
            if name and name.strip():
                self.save(name.strip())

        self.app.push_screen(PromptModal("Save the edited plan as", f"{self.plan.name}-edited"), named)

    @work(thread=True, exclusive=True, exit_on_error=False, group="plan-save", name="saving the plan")
    def save(self, name: str) -> None:
        from reuse_console.engine.reuse.plans import save_plan

        plan = edited_plan(self.plan, set(self.reusable), name)
        path = save_plan(self.console.lab, plan)
        self.post_message(self.Saved(plan.name, str(path)))

    @on(Saved)
    def _saved(self, message: Saved) -> None:
        self.notify(f"stored as plan {message.name}", title="Plan saved")

    def palette_commands(self):
        yield ("Plan: save the edit as a new plan", "Store the edited plan under a new name", self.action_save)
        yield ("Plan: undo the edits", "Back to the plan as stored", self.action_undo)
