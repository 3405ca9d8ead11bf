"""The Scan view: a scan's Dice per layer and kind, coloured by the drop from the baseline, and
per-class charts of Dice against layer index for each kind (the paper's figures 3/4/7/8); the
same for comparisons (RMSE, figures 6/10-12) and for BN scale/shift (figures 5/9).

Files are read and grids built in a thread worker (`tui.widgets.scan_grid`); the screen shows
the `Grid` it gets back.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from ..widgets.overlay_grid import overlay_grid
from ..widgets.scan_grid import Grid, bn_grid, chart_lines, rmse_grid, scan_grid
from .base import ConsoleScreen
from .measure_modal import MeasureModal, PredictorModal, measure_of
from .pick import Choices, PickModal, entry_choices

EMPTY = (
    "No scan open. o opens a scan or a comparison (or Enter on one in the Lab, 1).\n"
    "Start a scan from Jobs (5, then s), or: reuse-console scan RECIPIENT DONOR --data NAME"
)


class ScanScreen(ConsoleScreen):
    """Scans, comparisons and BN analyses as a layer x kind table and charts."""

    MODE = "scans"
    BINDINGS: ClassVar = [
        Binding("o", "pick", "Open", id="scans.open"),
        Binding("c", "toggle_view", "Table/Charts", id="scans.toggle_view"),
        Binding("b", "bn", "BN view", id="scans.bn"),
        Binding("v", "overlay", "Donors", id="scans.overlay"),
        Binding("a", "next_choice", "Next α/pair", id="scans.next_choice"),
        Binding("p", "next_choice", "Next pair", show=False, id="scans.next_pair"),
        Binding("r", "predictor", "Predictor", id="scans.predictor"),
    ]

    class Loaded(Message):
        def __init__(self, kind: str, ref: str, source: Any, grid: Grid) -> None:
            super().__init__()
            self.kind = kind
            self.ref = ref
            self.source = source
            self.grid = grid

    def __init__(self) -> None:
        super().__init__()
        self.kind: str | None = None  # "scan" | "comparison" | "bn" | "overlay"
        self.ref: str | None = None
        self.back: tuple[str, str] | None = None  # what b / v return to from the BN view or overlay
        self.source: Any = None
        self.grid: Grid | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(Text(EMPTY, style="dim"), id="scan-head")
        yield Static("", id="scan-note")
        with TabbedContent(id="scan-tabs"):
            with TabPane("Table", id="scan-tab-table"):
                yield DataTable(id="scan-table", cursor_type="cell")
                yield Static("", id="scan-detail")
            with TabPane("Charts", id="scan-tab-charts"):
                with VerticalScroll(id="scan-charts-scroll"):
                    yield Static("", id="scan-charts")

    # -- opening -------------------------------------------------------------------------------

    def open_scan(self, ref: str) -> None:
        self._reading(f"reading scan {ref}...")
        self.load("scan", ref, None, 0)

    def open_comparison(self, ref: str) -> None:
        self._reading(f"reading comparison {ref}...")
        self.load("comparison", ref, None, 0)

    def open_bn(self, recipient: str, donor: str) -> None:
        self._reading(f"computing BN scale and shift of {recipient} and {donor}...")
        self.load("bn", f"{recipient}|{donor}", None, 0)

    def open_overlay(self, ref: str) -> None:
        self._reading(f"reading the scans related to {ref}...")
        self.load("overlay", ref, None, 0)

    def _reopen(self, kind: str, ref: str) -> None:
        """Back to the scan or comparison the BN view or overlay was opened from."""
        self.back = None
        {"scan": self.open_scan, "comparison": self.open_comparison}.get(kind, self.open_scan)(ref)

    def _reading(self, text: str) -> None:
        self.query_one("#scan-head", Static).update(Text(text, style="yellow"))

    def worker_failed(self, worker: Any) -> None:
        self.query_one("#scan-head", Static).update(self.grid.title if self.grid else Text(EMPTY, style="dim"))

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan-load", name="reading the results")
    def load(self, kind: str, ref: str, source: Any, choice: int) -> None:
        """Read `ref` (unless `source` is already loaded) and build its grid (files: this thread only)."""
        lab = self.console.lab
        if kind == "scan":
            if source is None:
                from reuse_console.engine.swaps.scan_store import load_scan

                source = load_scan(lab, ref)
            grid = scan_grid(source, choice)
        elif kind == "comparison":
            if source is None and measure_of(lab, ref) is not None:  # CKA or a predictor: a modal shows it
                self.app.call_from_thread(self._measure_modal, ref)
                return
            if source is None:
                from reuse_console.engine.compare.rmse import read_comparison

                source = read_comparison(lab.resolve(ref, "comparisons").path, ref)
            grid = rmse_grid(source, choice)
        elif kind == "overlay":
            if source is None:
                from reuse_console.engine.swaps.overlay import build_overlay, related_scans

                source = build_overlay(related_scans(lab, ref))
            grid = overlay_grid(source, ref)
        else:
            recipient, donor = ref.split("|", 1)
            if source is None:
                from reuse_console.engine.compare.bn import read_bn

                source = read_bn(lab, recipient, donor)
            grid = bn_grid(source.layers, recipient, donor, source.note)
        self.post_message(self.Loaded(kind, ref, source, grid))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        self.kind, self.ref, self.source, self.grid = message.kind, message.ref, message.source, message.grid
        grid = message.grid
        self.query_one("#scan-head", Static).update(grid.title)
        note = self.query_one("#scan-note", Static)
        note.update(Text(grid.note, style="yellow"))
        note.display = bool(grid.note)
        self.set_note(message.ref.replace("|", " ← ") if message.kind == "bn" else message.ref)
        table = self.query_one("#scan-table", DataTable)
        table.clear(columns=True)
        table.add_column("layer", key="layer")
        for column in grid.columns:
            table.add_column(column, key=column)
        for row in grid.rows:
            cells: list[Any] = [Text(row, style="bold")]
            for column in grid.columns:
                text, style = grid.cells.get((row, column), ("", ""))
                cells.append(Text(text, style=style))
            table.add_row(*cells, key=row)
        self.query_one("#scan-detail", Static).update(Text(grid.legend, style="dim"))
        self._render_charts()
        if self.query_one("#scan-tabs", TabbedContent).active == "scan-tab-table":
            table.focus()

    def _render_charts(self) -> None:
        if self.grid is None:
            return
        width = max(40, self.query_one("#scan-charts-scroll").size.width or self.size.width) - 2
        lines = chart_lines(self.grid, width)
        text = Text("\n").join([Text(self.grid.legend, style="dim"), *lines])
        self.query_one("#scan-charts", Static).update(text)

    def on_resize(self) -> None:
        self._render_charts()

    @on(DataTable.CellHighlighted, "#scan-table")
    def _cell(self, event: DataTable.CellHighlighted) -> None:
        if self.grid is None:
            return
        row = str(event.cell_key.row_key.value)
        column = str(event.cell_key.column_key.value)
        detail = self.grid.details.get((row, column))
        self.query_one("#scan-detail", Static).update(
            detail if detail is not None else Text(self.grid.legend, style="dim")
        )

    # -- actions -------------------------------------------------------------------------------

    def _measure_modal(self, ref: str) -> None:
        self.worker_failed(None)  # the head back to what is shown
        self.app.push_screen(MeasureModal(self.console.lab, ref))

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan-list", name="listing scans")
    def list_choices(self) -> None:
        lab = self.console.lab
        scans = [(f"scans/{i}", d) for i, d in entry_choices(lab.entries("scans"))]
        comps = [(f"comparisons/{i}", d) for i, d in entry_choices(lab.entries("comparisons"))]
        self.post_message(Choices("open", scans + comps))

    def action_pick(self) -> None:
        self.list_choices()

    @on(Choices)
    def _choices(self, message: Choices) -> None:
        def chosen(ref: str | None) -> None:
            if ref is None:
                return
            kind, _, name = ref.partition("/")
            if kind == "scans":
                self.open_scan(name)
            else:
                self.open_comparison(name)

        current = f"{'scans' if self.kind == 'scan' else 'comparisons'}/{self.ref}" if self.ref else None
        empty = "no scans or comparisons yet: start a scan from Jobs (5, then s)"
        self.app.push_screen(PickModal("Open a scan or comparison", message.choices, current, empty), chosen)

    def action_toggle_view(self) -> None:
        tabs = self.query_one("#scan-tabs", TabbedContent)
        tabs.active = "scan-tab-charts" if tabs.active == "scan-tab-table" else "scan-tab-table"
        if tabs.active == "scan-tab-table":
            self.query_one("#scan-table", DataTable).focus()
        else:
            self.query_one("#scan-charts-scroll").focus()

    def action_bn(self) -> None:
        if self.grid is None:
            self.notify("Open a scan or a comparison first (o).", severity="warning")
            return
        if self.kind == "bn" and self.back is not None:
            self._reopen(*self.back)
            return
        recipient, donor = self.grid.extra.get("recipient"), self.grid.extra.get("donor")
        if recipient and donor and self.kind in ("scan", "comparison") and self.ref:
            self.back = (self.kind, self.ref)
            self.open_bn(recipient, donor)

    def action_overlay(self) -> None:
        """The open scan beside the lab's other scans of its recipient and its pair set (v again: back)."""
        if self.kind == "overlay" and self.ref is not None:
            self._reopen("scan", self.ref)
            return
        if self.kind != "scan" or self.ref is None:
            self.notify("Open a scan first (o): the overlay shows it beside its other donors.", severity="warning")
            return
        self.open_overlay(self.ref)

    def action_predictor(self) -> None:
        """The predictor table of the open scan (tui/screens/measure_modal.py): does a measure predict its drops?"""
        if self.kind != "scan" or self.ref is None:
            self.notify("Open a scan first (o): r ranks RMSE, CKA... against its Dice drops.", severity="warning")
            return
        self.app.push_screen(PredictorModal(self.console.lab, self.ref))

    def action_next_choice(self) -> None:
        if self.grid is None or self.kind is None or self.ref is None or len(self.grid.choices) < 2:
            return
        self.load(self.kind, self.ref, self.source, self.grid.choice + 1)

    def palette_commands(self):
        yield ("Scans: open", "Open a scan or comparison", self.action_pick)
        yield ("Scans: BN scale/shift view", "BN analysis of the shown pair of models", self.action_bn)
        yield (
            "Scans: overlay donors",
            "The open scan beside init, random, other donors and pairs",
            self.action_overlay,
        )
        yield ("Scans: table or charts", "Switch between the table and the charts", self.action_toggle_view)
