"""The Experiment view (Enter on a grid in the Lab): the paper's Table 3, a chart of per-class Dice
per row, and the RMSE-to-reference figure (13/14) as per-layer sparklines per kind.

Numbers are the engine's (`Experiment.table()`); Enter on a row lists its cells' checkpoints and
opens the chosen one's layers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ..render.experiment_view import (
    ExperimentView,
    build_view,
    cell_lines,
    dice_chart,
    rmse_chart,
    row_detail,
    table_cells,
)
from .pick import PickModal
from .result import ResultScreen

TABS = ("exp-tab-table", "exp-tab-chart", "exp-tab-rmse")


class ExperimentScreen(ResultScreen):
    """A transfer grid's results: table, Dice chart, RMSE figure."""

    KIND = "experiments"
    HELP = (
        "The paper's Table 3 for one transfer grid: a row per source x mode x training-subject count "
        "(n), with s finished seeds. Each class column shows the mean Dice over seeds, ± the sample "
        "std, and in brackets the difference to random initialisation paired by seed (green above, "
        "red below, brighter when larger; * and bold: its 95% t interval excludes 0). The line under "
        "the table gives the selected row's intervals. The Chart tab draws each row's Dice per class; "
        "the RMSE tab draws each row's RMSE to the study's reference model per layer, a panel per kind."
    )
    BINDINGS: ClassVar = [
        Binding("c", "next_tab", "Table/Chart/RMSE", id="experiment.next_tab"),
        Binding("enter", "open_cells", "Open cell", id="experiment.open"),
    ]

    def compose_view(self) -> ComposeResult:
        with TabbedContent(id="exp-tabs"):
            with TabPane("Table", id=TABS[0]):
                yield DataTable(id="exp-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="exp-detail")
            with TabPane("Chart", id=TABS[1]):
                with VerticalScroll(id="exp-chart-scroll"):
                    yield Static("", id="exp-chart")
            with TabPane("RMSE", id=TABS[2]):
                with VerticalScroll(id="exp-rmse-scroll"):
                    yield Static("", id="exp-rmse")

    DEFAULT_CSS = """
    #exp-tabs { height: 1fr; }
    #exp-tabs TabPane { padding: 0; }
    #exp-table { height: 1fr; }
    #exp-detail { height: 2; padding: 0 1; background: $boost; }
    #exp-chart-scroll, #exp-rmse-scroll { height: 1fr; padding: 0 1; }
    #view-head { height: auto; max-height: 2; padding: 0 1; }
    """

    def read(self) -> ExperimentView:
        from reuse_console.engine.grids.experiment import load_experiment

        return build_view(load_experiment(self.console.lab, self.obj_id))

    def on_mount(self) -> None:
        """Start the re-read timer (Textual runs ResultScreen.on_mount too, which reads the file)."""
        self.set_interval(self.console.config.lab_poll_s, self._poll, name="experiment poll")

    def _poll(self) -> None:
        """A grid still running writes its experiment after every cell: read it again."""
        if self.data is not None and self.data.status == "running":
            self.load()

    def show(self, view: ExperimentView) -> None:
        self.set_head(view.title)
        table = self.query_one("#exp-table", DataTable)
        first, keep = not table.columns, table.cursor_row if table.row_count else 0
        table.clear(columns=True)
        for col in ("source", "mode", "n", "s"):
            table.add_column(col, key=col)
        for col in view.columns:
            table.add_column(Text(col, justify="right"), key=f"col:{col}")
        has_std, has_diff = cell_lines(view)  # one seed: no std line; no random row: no difference line
        for row in view.rows:
            table.add_row(*table_cells(row, has_std, has_diff), key=row.key, height=1 + has_std + has_diff)
        if not view.rows:
            self.query_one("#exp-detail", Static).update(Text("no cells yet", style="dim"))
        self._charts()
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1))
        if first:  # a re-read of a running grid leaves the focus where the user put it
            table.focus()

    def _charts(self) -> None:
        view = self.data
        if view is None:
            return
        width = max(40, (self.size.width or 80) - 4)
        self.query_one("#exp-chart", Static).update(Text("\n").join(dice_chart(view, width)))
        legend = Text(view.legend, style="dim")
        self.query_one("#exp-rmse", Static).update(Text("\n").join([*rmse_chart(view, width), legend]))

    def on_resize(self) -> None:
        self._charts()

    def selected_row(self) -> Any:
        view = self.data
        table = self.query_one("#exp-table", DataTable)
        if view is None or not table.row_count:
            return None
        return view.rows[table.cursor_row]

    @on(DataTable.RowHighlighted, "#exp-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.selected_row()
        if row is not None:
            self.query_one("#exp-detail", Static).update(row_detail(row, self.data.columns))

    @on(DataTable.RowSelected, "#exp-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_cells()

    def action_open_cells(self) -> None:
        """List the selected row's cells (one per seed) and open the chosen checkpoint's layers."""
        row = self.selected_row()
        if row is None:
            return
        choices = [
            (ckpt, f"seed {seed}  fg Dice {fg:.3f}" if fg == fg else f"seed {seed}  not done")
            for ckpt, seed, fg in row.checkpoints
        ]

        def chosen(checkpoint: str | None) -> None:
            if checkpoint:
                self.console.open_layers(checkpoint)

        title = f"Cells of {row.source} {row.mode} n={row.subjects}"
        self.app.push_screen(PickModal(title, choices, None, "this row has no cells"), chosen)

    def action_next_tab(self) -> None:
        tabs = self.query_one("#exp-tabs", TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)] if tabs.active in TABS else TABS[0]
        target = "#exp-table" if tabs.active == TABS[0] else f"#{tabs.active.replace('tab-', '')}-scroll"
        self.call_after_refresh(self.query_one(target).focus)  # once the pane is shown and laid out

    def palette_commands(self):
        yield ("Experiment: table, chart or RMSE", "Show the next tab of the experiment view", self.action_next_tab)
        yield ("Experiment: open the row's cells", "Pick a cell's checkpoint to open", self.action_open_cells)
