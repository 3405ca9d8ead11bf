"""A modal with a CKA comparison or a predictor table, as `reuse-console show` prints them.

Both are comparisons (`comparisons/<id>.h5` with `measure` cka or predictor) that the RMSE views
cannot read. `MeasureModal` shows one stored object; `PredictorModal` (key `r` in the Scan view)
shows the newest predictor table of a scan, and when the lab has none it runs the measures that
need no forward pass (`reuse-console predict SCAN --measures rmse,relative,bn-dt,bn-ds,norm`,
seconds) and stores it as that command would. Files are read in a thread worker.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from reuse_console.store.lab import Lab

from .base import WorkerErrors

QUICK_MEASURES = "rmse,relative,bn-dt,bn-ds,norm"  # no forward pass: fine in a console worker


def measure_of(lab: Lab, obj_id: str) -> str | None:
    """ "cka" or "predictor" for a comparison only this modal shows, None for an RMSE one (worker thread)."""
    from reuse_console.store.h5 import attr_str, open_h5

    with open_h5(lab.resolve(obj_id, "comparisons").path) as f:
        measure = attr_str(f, "measure")
    return measure if measure in ("cka", "predictor") else None


def render_measure(lab: Lab, obj_id: str) -> RenderableType:
    """The stored CKA comparison or predictor `obj_id` as `show` renders it (worker thread)."""
    from reuse_console.engine.compare.cka_store import is_cka, read_similarity
    from reuse_console.engine.reuse.predict_store import is_predictor, read_predictor

    from ..render.predictor import render_predictor
    from ..render.similarity import render_similarity

    path = lab.resolve(obj_id, "comparisons").path
    if is_cka(path):
        return render_similarity(read_similarity(path, obj_id))
    if is_predictor(path):
        return render_predictor(read_predictor(path, obj_id))
    return Text(f"{obj_id} is an RMSE comparison: the Scan view (4) shows it", style="yellow")


class MeasureModal(WorkerErrors, ModalScreen[None]):
    """One stored CKA comparison or predictor table, scrollable; Esc closes."""

    BINDINGS: ClassVar = [Binding("escape,q,enter", "dismiss", "Close", id="measure.close")]
    DEFAULT_CSS = """
    #measure-box { width: 100%; max-width: 100; height: 90%; }
    """

    class Ready(Message):
        def __init__(self, view: RenderableType, command: str) -> None:
            super().__init__()
            self.view = view
            self.command = command

    def __init__(self, lab: Lab, obj_id: str, title: str = "") -> None:
        super().__init__(classes="modal")
        self.lab = lab
        self.obj_id = obj_id
        self.title_text = title or f"comparison {obj_id}"
        self.command = f"reuse-console show {obj_id}"

    def compose(self) -> ComposeResult:
        with Vertical(id="measure-box", classes="modal-box"):
            with VerticalScroll(id="measure-scroll"):
                yield Static("reading...", id="measure-body")
            yield Static(f"{self.command}    Esc closes", id="measure-hint", classes="modal-hint")

    def on_mount(self) -> None:
        self.query_one("#measure-box").border_title = self.title_text
        self.read()

    @work(thread=True, exclusive=True, exit_on_error=False, group="measure", name="reading the comparison")
    def read(self) -> None:
        self.post_message(self.Ready(render_measure(self.lab, self.obj_id), self.command))

    @on(Ready)
    def _ready(self, message: Ready) -> None:
        self.query_one("#measure-body", Static).update(message.view)
        self.query_one("#measure-hint", Static).update(f"{message.command}    Esc closes")
        self.query_one("#measure-scroll").focus()

    def worker_failed(self, worker: Any) -> None:
        self.query_one("#measure-body", Static).update(Text("could not read it (see the error)", style="red"))


class PredictorModal(MeasureModal):
    """The predictor table of scan `scan`: the newest stored one, else the quick measures, stored."""

    def __init__(self, lab: Lab, scan: str) -> None:
        super().__init__(lab, scan, f"predictor of scan {scan}")
        self.scan = scan
        self.command = f"reuse-console predict {scan}"

    @work(thread=True, exclusive=True, exit_on_error=False, group="measure", name="the predictor table")
    def read(self) -> None:
        from reuse_console.engine.reuse.predict_lab import run_predict
        from reuse_console.engine.reuse.predict_store import newest_for_scan

        from ..render.predictor import render_predictor

        found = newest_for_scan(self.lab, self.scan)
        if found is not None:
            self.post_message(self.Ready(render_measure(self.lab, found), f"reuse-console show {found}"))
            return
        self.app.call_from_thread(
            self.query_one("#measure-body", Static).update,
            Text(f"no predictor of {self.scan} yet: measuring {QUICK_MEASURES}...", style="yellow"),
        )
        result = run_predict(self.lab, self.scan, measures=QUICK_MEASURES)
        command = f"reuse-console predict {self.scan} --measures {QUICK_MEASURES}  (all: aligned-rmse, cka too)"
        self.post_message(self.Ready(render_predictor(result), command))
