"""The Comparison view (Enter on an RMSE comparison in the Lab): per-layer RMSE of N models, for one
pair (layers x kinds) or as the matrix of every pair for one kind (layers x pairs), with a
sparkline per kind or pair (`c`). `v` shows the same comparison in the Scan view (charts, BN view).
A CKA comparison or a predictor table (same folder) opens in the measure modal instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import ContentSwitcher, DataTable, Static

from ..render.comparison_view import Layout, matrix_layout, pair_layout, spark_lines
from .measure_modal import MeasureModal, measure_of
from .result import ResultScreen


class ComparisonScreen(ResultScreen):
    """RMSE of N models: a pair or the matrix, table and sparklines."""

    KIND = "comparisons"
    HELP = (
        "RMSE between the models of a comparison, per layer and kind, relative to the first model's "
        "RMS (green small, red at 1 or more; the line under the table gives the absolute RMSE of the "
        "cell under the cursor). Pair layout: one pair of models, a column per kind (p: next pair). "
        "Matrix layout (m): one kind, a column per pair of models, numbered as in the title (k: next "
        "kind). Enter on a cell opens its pair (matrix) or its kind's matrix (pair). c switches to "
        "sparklines: each column against layer number. v opens the "
        "comparison in the Scan view, whose b shows BN scale/shift."
    )
    BINDINGS: ClassVar = [
        Binding("m", "matrix", "Matrix", id="comparison.matrix"),
        Binding("p", "next_pair", "Pair", show=False, id="comparison.next_pair"),
        Binding("k", "next_kind", "Kind", show=False, id="comparison.next_kind"),
        Binding("c", "toggle_view", "Chart", id="comparison.toggle_view"),
        Binding("v", "scan_view", "Scan view", id="comparison.scan_view"),
    ]
    DEFAULT_CSS = """
    #cmp-switcher { height: 1fr; }
    #cmp-table { height: 1fr; }
    #cmp-detail { height: 1; padding: 0 1; background: $boost; }
    #cmp-sparks-scroll { height: 1fr; padding: 0 1; }
    #view-head { height: auto; max-height: 3; padding: 0 1; }
    """

    def __init__(self, obj_id: str) -> None:
        super().__init__(obj_id)
        self.matrix = False
        self.pair = 0
        self.kind = 0
        self.shown: Layout | None = None

    def compose_view(self) -> ComposeResult:
        with ContentSwitcher(initial="cmp-table", id="cmp-switcher"):
            yield DataTable(id="cmp-table", cursor_type="cell")
            with VerticalScroll(id="cmp-sparks-scroll"):
                yield Static("", id="cmp-sparks")
        yield Static("", id="cmp-detail")

    def read(self) -> Any:
        from reuse_console.engine.compare.rmse import read_comparison

        if measure_of(self.console.lab, self.obj_id) is not None:
            return None  # CKA or a predictor table: shown by the measure modal instead
        return read_comparison(self.console.lab.resolve(self.obj_id, "comparisons").path, self.obj_id)

    def show(self, comp: Any) -> None:
        if comp is None:
            self.app.pop_screen()
            self.app.push_screen(MeasureModal(self.console.lab, self.obj_id))
            return
        self._layout()
        self.query_one("#cmp-table", DataTable).focus()

    def _layout(self) -> None:
        comp = self.data
        if comp is None:
            return
        if not comp.pairs:
            self.set_head(Text(f"comparison {self.obj_id} has no pair of models", style="dim"))
            return
        self.shown = matrix_layout(comp, self.kind) if self.matrix else pair_layout(comp, self.pair)
        head = Text.assemble(("comparison ", "dim"), (self.obj_id, "bold"), f"  {len(comp.models)} models\n")
        self.set_head(head.append_text(self.shown.title))
        table = self.query_one("#cmp-table", DataTable)
        row = table.cursor_row if table.row_count else 0
        table.clear(columns=True)
        table.add_column("layer", key="layer")
        for column in self.shown.columns:
            table.add_column(Text(column, justify="right"), key=column)
        for layer, cells in self.shown.rows:
            table.add_row(Text(layer, style="bold"), *cells, key=layer)
        table.move_cursor(row=min(row, max(0, table.row_count - 1)), column=1)  # the layer stays, on a value
        self._sparks()

    def _sparks(self) -> None:
        if self.shown is not None:
            width = max(40, (self.size.width or 80) - 2)
            self.query_one("#cmp-sparks", Static).update(Text("\n").join(spark_lines(self.shown, width)))

    def on_resize(self) -> None:
        self._sparks()

    @on(DataTable.CellHighlighted, "#cmp-table")
    def _cell(self, event: DataTable.CellHighlighted) -> None:
        if self.shown is None:
            return
        key = (str(event.cell_key.row_key.value), str(event.cell_key.column_key.value))
        detail = self.shown.details.get(key, Text("relative RMSE = RMSE / RMS of the pair's first model", style="dim"))
        self.query_one("#cmp-detail", Static).update(detail)

    @on(DataTable.CellSelected, "#cmp-table")
    def _selected(self, event: DataTable.CellSelected) -> None:
        """Enter picks: in the matrix, the pair under the cursor; in a pair, the kind's matrix."""
        comp, column = self.data, event.coordinate.column - 1
        if comp is None or column < 0:
            return
        if self.matrix:
            self.pair, self.matrix = column, False
        else:
            self.kind, self.matrix = column, True
        self._layout()

    def action_matrix(self) -> None:
        self.matrix = not self.matrix
        self._layout()

    def action_next_pair(self) -> None:
        if self.data is not None and self.data.pairs:
            self.pair = (self.pair + 1) % len(self.data.pairs)
            self.matrix = False
            self._layout()

    def action_next_kind(self) -> None:
        if self.data is not None and self.data.kinds:
            self.kind = (self.kind + 1) % len(self.data.kinds)
            self.matrix = True
            self._layout()

    def action_toggle_view(self) -> None:
        switcher = self.query_one("#cmp-switcher", ContentSwitcher)
        switcher.current = "cmp-sparks-scroll" if switcher.current == "cmp-table" else "cmp-table"
        self.call_after_refresh(self.query_one(f"#{switcher.current}").focus)

    def action_scan_view(self) -> None:
        self.console.open_comparison(self.obj_id)

    def palette_commands(self):
        yield ("Comparison: pair or matrix", "Switch between one pair and every pair of one kind", self.action_matrix)
        yield (
            "Comparison: table or sparklines",
            "Switch between the table and the sparklines",
            self.action_toggle_view,
        )
        yield ("Comparison: next pair", "Show the next pair of models", self.action_next_pair)
        yield ("Comparison: next kind", "Matrix of the next kind", self.action_next_kind)
        yield ("Comparison: open in the Scan view", "Charts and the BN view of the same models", self.action_scan_view)
