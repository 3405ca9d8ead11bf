"""The Lab screen: every object in the lab as tables, one tab per kind; type to filter, Enter opens.

Listing reads HDF5 root attributes, so it runs in a thread worker and comes back as one message;
a slow timer re-reads the lab so objects made elsewhere (a job, another terminal) appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Input, TabbedContent, TabPane

from reuse_console.store.lab import Entry, Lab

from ..render.lab_columns import checkpoint_score, fit_columns, short_time, summary_text
from ..widgets.empty_lab import EmptyLab
from ..widgets.inputs import ConsoleInput
from .base import ConsoleScreen
from .detail import DetailModal

KIND_TABS: tuple[tuple[str, str], ...] = (
    ("datasets", "Data"),
    ("checkpoints", "Checkpoints"),
    ("runs", "Runs"),
    ("scans", "Scans"),
    ("comparisons", "RMSE"),
    ("plans", "Plans"),
    ("experiments", "Grids"),
    ("jobs", "Jobs"),
)
COLUMNS: dict[str, tuple[str, ...]] = {
    "datasets": ("id", "summary", "created"),
    "checkpoints": ("id", "arch", "task", "data", "epoch", "Dice/PSNR", "created"),
    "runs": ("id", "summary", "created"),
    "scans": ("id", "summary", "created"),
    "comparisons": ("id", "summary", "created"),
    "plans": ("id", "summary", "created"),
    "experiments": ("id", "summary", "created"),
    "jobs": ("id", "status", "command", "started"),
}


def display_order(kind: str, values: list[Any]) -> list[Any]:
    """A row's or header's values in the order shown: the free-text column (summary, command) last,
    so at 80 columns it is the one cut, not `created`/`started` behind it (checkpoints as listed:
    fitted to the width instead, tui/render/lab_columns.py)."""
    columns = COLUMNS[kind]
    long = next((columns.index(c) for c in ("summary", "command") if c in columns), None)
    if long is None or kind == "checkpoints":
        return list(values)
    return [v for i, v in enumerate(values) if i != long] + [values[long]]


@dataclass(frozen=True)
class Row:
    """One table row: the object's id, its cells, and the text the filter matches against."""

    kind: str
    id: str
    cells: tuple[str, ...]
    error: str | None = None

    @property
    def haystack(self) -> str:
        return " ".join(self.cells).lower()


def entry_row(entry: Entry) -> Row:
    """The table row for one lab object."""
    if entry.error:
        return Row(entry.kind, entry.id, (entry.id, entry.error, ""), error=entry.error)
    s = entry.summary
    cells: tuple[str, ...]
    if entry.kind == "checkpoints":
        cells = (
            entry.id,
            str(s.get("arch", "")),
            str(s.get("task", "")),
            str(s.get("data", "")),
            str(s.get("epoch", "")),
            checkpoint_score(s),
            short_time(entry.created),
        )
    else:
        cells = (entry.id, summary_text(s), short_time(entry.created))
    return Row(entry.kind, entry.id, cells)


def job_row(job: Any) -> Row:
    """The table row for one job (an `engine.jobs.Job`)."""
    command = "reuse-console " + " ".join(job.argv)
    return Row("jobs", job.id, (job.id, job.status, command, short_time(job.started)))


@dataclass
class LabListing:
    """What the lab holds, read off the UI thread."""

    root: str
    exists: bool
    rows: dict[str, list[Row]] = field(default_factory=dict)
    complete: bool = True  # False: only the first page (`first_page`), the rest still being read

    @property
    def empty(self) -> bool:
        return not any(self.rows.values())


FIRST_KIND = "checkpoints"  # the tab the screen opens on when the lab has any


def first_page(lab: Lab) -> LabListing:
    """The Checkpoints tab alone, shown while the other kinds are read (a lab of 10,000 objects)."""
    rows: dict[str, list[Row]] = {kind: [] for kind, _ in KIND_TABS}
    rows[FIRST_KIND] = [entry_row(e) for e in lab.entries(FIRST_KIND)]
    return LabListing(root=str(lab.root), exists=lab.root.is_dir(), rows=rows, complete=False)


def read_listing(lab: Lab) -> LabListing:
    """Read every object's root attributes and the job list (HDF5 and files: worker thread only)."""
    rows: dict[str, list[Row]] = {kind: [] for kind, _ in KIND_TABS}
    for kind in rows:
        if kind != "jobs":  # jobs are listed with their status below
            rows[kind] = [entry_row(e) for e in lab.entries(kind)]
    if lab.root.is_dir():
        try:
            from reuse_console.engine.jobs.control import list_jobs
        except ModuleNotFoundError:  # a listing without the engine's jobs: no job rows
            pass
        else:
            rows["jobs"] = [job_row(job) for job in list_jobs(lab)]
    return LabListing(root=str(lab.root), exists=lab.root.is_dir(), rows=rows)


class LabTable(DataTable):
    """A kind's table. Letters typed here start the filter; left/right switch the kind."""

    BINDINGS: ClassVar = [
        Binding("enter", "select_cursor", "Open", id="lab.open"),
        Binding("left", "screen.kind(-1)", "Prev kind", show=False, id="lab.prev_kind"),
        Binding("right", "screen.kind(1)", "Next kind", show=False, id="lab.next_kind"),
    ]

    class TypedToFilter(Message):
        """A printable character typed on the table, meant for the filter box."""

        def __init__(self, character: str) -> None:
            super().__init__()
            self.character = character

    def on_key(self, event: Any) -> None:
        char = event.character
        if char and event.is_printable and (char.isalpha() or char in "-_.+"):
            event.stop()
            event.prevent_default()
            self.post_message(self.TypedToFilter(char))


class LabScreen(ConsoleScreen):
    """Data sets, checkpoints, runs, scans, comparisons and jobs of the lab."""

    MODE = "lab"
    AUTO_FOCUS = "LabTable"
    BINDINGS: ClassVar = [
        Binding("slash", "focus_filter", "Filter", id="lab.filter"),
        Binding("ctrl+r", "reload", "Reload", id="lab.reload"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="lab.clear_filter"),
    ]

    class Loaded(Message):
        """The lab was read."""

        def __init__(self, listing: LabListing) -> None:
            super().__init__()
            self.listing = listing

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LabScreen.Loaded) and message.listing.complete  # a newer whole listing

    def __init__(self) -> None:
        super().__init__()
        self.listing: LabListing | None = None
        self._shown: dict[str, tuple[Row, ...]] = {}
        self._drawn: dict[str, tuple[Any, ...]] = {}  # per kind: rows, headers and cells as drawn
        # The tab the screen itself last chose; the user choosing another one (keys, mouse,
        # palette) means the first listing, read in a worker, must not move them away from it.
        self._chosen_tab = f"tab-{KIND_TABS[0][0]}"
        self.user_moved = False

    def compose_body(self) -> ComposeResult:
        with ContentSwitcher(initial="lab-tables", id="lab-switcher"):
            with Vertical(id="lab-tables"):
                yield ConsoleInput(
                    placeholder="type to filter (ids, arch, data set...)",
                    id="lab-filter",
                    compact=True,
                    select_on_focus=False,
                )
                with TabbedContent(id="lab-tabs"):
                    for kind, label in KIND_TABS:
                        with TabPane(label, id=f"tab-{kind}"):
                            yield LabTable(id=f"table-{kind}", cursor_type="row", zebra_stripes=True)
            yield EmptyLab(self.console.lab, id="lab-empty")

    def on_mount(self) -> None:
        for kind, _ in KIND_TABS:
            self._draw(kind, ())
        self.reload()
        self.set_interval(self.console.config.lab_poll_s, self.reload, name="lab poll")

    # -- reading -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="lab-read", name="reading the lab")
    def reload(self) -> None:
        """Read the lab in a thread and post what it holds (the first page first, once)."""
        if self.listing is None:
            self.post_message(self.Loaded(first_page(self.console.lab)))
        self.post_message(self.Loaded(read_listing(self.console.lab)))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if not message.listing.complete and self.listing is not None:
            return  # a first page after the whole listing: nothing new
        if not message.listing.complete and not message.listing.rows[FIRST_KIND]:
            return  # no checkpoints: wait for the whole listing to choose the tab
        self.listing = message.listing
        self.console.listing = message.listing  # the command palette offers these objects
        switcher = self.query_one("#lab-switcher", ContentSwitcher)
        if message.listing.empty:
            switcher.current = "lab-empty"
            self.query_one(EmptyLab).show(message.listing.exists)
            return
        first_fill = switcher.current != "lab-tables" or not self._shown
        switcher.current = "lab-tables"
        self._fill()
        if first_fill and not self.user_moved:
            self._show_first_kind()

    def _fill(self) -> None:
        """Put the filtered rows in each table, keeping the cursor on the same object."""
        if self.listing is None:
            return
        words = self.query_one("#lab-filter", Input).value.lower().split()
        tabs = self.query_one("#lab-tabs", TabbedContent)
        for kind, label in KIND_TABS:
            rows = tuple(r for r in self.listing.rows.get(kind, []) if all(w in r.haystack for w in words))
            tabs.get_tab(f"tab-{kind}").label = f"{label} {len(rows)}"
            self._shown[kind] = rows
            self._draw(kind, rows)

    def _draw(self, kind: str, rows: tuple[Row, ...]) -> None:
        """Put `rows` in the kind's table (checkpoints fitted to its width), keeping the cursor on
        the same object; nothing when the table shows them so already."""
        table = self.query_one(f"#table-{kind}", LabTable)
        heads = display_order(kind, list(COLUMNS[kind]))
        cells = [display_order(kind, [*r.cells, *[""] * (len(heads) - len(r.cells))]) for r in rows]
        if kind == "checkpoints":  # the width less the vertical scrollbar's column
            heads, cells = fit_columns(heads, cells, (table.size.width or self.app.size.width) - 1)
        drawn = (rows, tuple(heads), tuple(map(tuple, cells)))
        if self._drawn.get(kind) == drawn:
            return
        self._drawn[kind] = drawn
        keep = self._cursor_id(table)
        table.clear(columns=True)  # column widths follow the cells (a narrower id column too)
        for column in heads:
            table.add_column(column, key=column)
        for row, line in zip(rows, cells):
            table.add_row(*(Text(c, style="red") if row.error and c == row.error else c for c in line), key=row.id)
        if keep is not None and keep in {r.id for r in rows}:
            table.move_cursor(row=table.get_row_index(keep))

    def on_resize(self) -> None:
        """A new width fits the Checkpoints table again (once the tables have their new size)."""
        self.call_after_refresh(self._fill)

    @staticmethod
    def _cursor_id(table: DataTable) -> str | None:
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def _show_first_kind(self) -> None:
        """Open on Checkpoints when the lab has any (what a study starts from), else on the first
        kind it has (Data, in a lab that has data)."""
        kinds = ["checkpoints", *(kind for kind, _ in KIND_TABS)]
        for kind in kinds:
            if self._shown.get(kind):
                self._chosen_tab = f"tab-{kind}"
                self.show_kind(kind)
                return

    # -- navigation ----------------------------------------------------------------------------

    def show_kind(self, kind: str) -> None:
        """Show one kind's tab and focus its table."""
        self.query_one("#lab-tabs", TabbedContent).active = f"tab-{kind}"
        self.query_one(f"#table-{kind}", LabTable).focus()

    @property
    def current_kind(self) -> str:
        active = self.query_one("#lab-tabs", TabbedContent).active
        return active.removeprefix("tab-") or KIND_TABS[0][0]

    def action_kind(self, step: int) -> None:
        kinds = [k for k, _ in KIND_TABS]
        self.show_kind(kinds[(kinds.index(self.current_kind) + step) % len(kinds)])

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id != self._chosen_tab:
            self.user_moved = True
        self.query_one(f"#table-{self.current_kind}", LabTable).focus()

    def action_focus_filter(self) -> None:
        self.query_one("#lab-filter", Input).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#lab-filter", Input)
        box.value = ""
        self.query_one(f"#table-{self.current_kind}", LabTable).focus()

    def action_reload(self) -> None:
        self.reload()

    @on(LabTable.TypedToFilter)
    def _typed(self, message: LabTable.TypedToFilter) -> None:
        box = self.query_one("#lab-filter", Input)
        box.focus()
        box.insert_text_at_cursor(message.character)

    @on(Input.Changed, "#lab-filter")
    def _filter_changed(self) -> None:
        self._fill()

    @on(Input.Submitted, "#lab-filter")
    def _filter_done(self) -> None:
        self.query_one(f"#table-{self.current_kind}", LabTable).focus()

    def on_key(self, event: Any) -> None:
        """Down or Enter in the filter box goes back to the table."""
        if event.key == "down" and self.focused is self.query_one("#lab-filter", Input):
            event.stop()
            self.query_one(f"#table-{self.current_kind}", LabTable).focus()

    # -- opening -------------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_object(self.current_kind, str(event.row_key.value))

    def open_object(self, kind: str, obj_id: str) -> None:
        """Checkpoints open their layers, scans the scan view, jobs the job view; grids, plans, runs and
        comparisons their own views; data sets the details box."""
        app = self.console
        if kind == "checkpoints":
            app.open_layers(obj_id)
        elif kind == "scans":
            app.open_scan(obj_id)
        elif kind == "jobs":
            app.open_job(obj_id)
        elif kind in ("experiments", "plans", "runs", "comparisons"):
            app.open_view(kind, obj_id)  # a view of its own (tui/screens/experiment.py, plan_view.py ...)
        else:
            self.app.push_screen(DetailModal(self.console.lab, kind, obj_id))

    def palette_commands(self):
        for kind, label in KIND_TABS:
            yield (f"Lab: show {kind}", f"List the lab's {kind} ({label} tab)", lambda k=kind: self.show_kind(k))
        yield ("Lab: reload", "Read the lab again", self.reload)
