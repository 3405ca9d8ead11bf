"""The Jobs screen: start train and scan jobs from forms, follow them live, cancel them.

Jobs are separate `reuse-console ...` processes in their own session (`engine.jobs`), so they
outlive the console and the SSH link; reopened, the console lists them again from the lab. A
timer starts a thread worker that lists the jobs and reads the selected job's new events; its
result comes back as one message that replaces any not yet handled, so the view redraws at
most a few times a second however fast a job reports.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from ..widgets.job_view import STATUS_STYLE, JobFollower, JobSnapshot, JobView
from ..widgets.sysmon import system_line
from .base import ConsoleScreen
from .job_forms import ScanForm, TrainForm
from .lab import short_time
from .modals import ConfirmModal
from .pick import entry_choices, suggest_pair

NO_JOBS = (
    "No jobs yet. t starts a training job, s a scan.\n\n"
    "Each job is a separate `reuse-console ...` process in its own session: it keeps running when\n"
    "the console closes or the SSH link drops, and the console finds it again when reopened."
)


class JobsScreen(ConsoleScreen):
    """Jobs of the lab and the live view of the selected one."""

    MODE = "jobs"
    BINDINGS: ClassVar = [
        Binding("t", "new_train", "Train", id="jobs.train"),
        Binding("s", "new_scan", "Scan", id="jobs.scan"),
        Binding("x", "cancel_job", "Cancel", id="jobs.cancel"),
        Binding("y", "copy_command", "Copy", id="jobs.copy"),
        Binding("o", "open_result", "Result", id="jobs.open_result"),
    ]

    class Polled(Message):
        """The job list and the selected job's snapshot, read in the worker."""

        def __init__(self, jobs: list[Any], snapshot: JobSnapshot | None, system: str) -> None:
            super().__init__()
            self.jobs = jobs
            self.snapshot = snapshot
            self.system = system

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, JobsScreen.Polled)

    class FormOptions(Message):
        """Lab objects a form offers, read in a worker, with a suggested recipient and donor."""

        def __init__(
            self,
            form: str,
            datasets: list[tuple[str, str]],
            checkpoints: list[tuple[str, str]],
            recipient: str | None = None,
            donor: str | None = None,
        ) -> None:
            super().__init__()
            self.form = form
            self.datasets = datasets
            self.checkpoints = checkpoints
            self.recipient = recipient
            self.donor = donor

    class JobStarted(Message):
        def __init__(self, job: Any) -> None:
            super().__init__()
            self.job = job

    class JobCancelled(Message):
        def __init__(self, job: Any) -> None:
            super().__init__()
            self.job = job

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self.jobs: list[Any] = []
        self.snapshot: JobSnapshot | None = None
        self._followers: dict[str, JobFollower] = {}  # touched only by the polling worker
        self._rows: tuple[tuple[str, str], ...] = ()

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="jobs-table", cursor_type="row")
        yield JobView(id="job-view")

    def on_mount(self) -> None:
        table = self.query_one("#jobs-table", DataTable)
        for column in ("id", "status", "started", "command"):
            table.add_column(column, key=column)
        self.query_one(JobView).show(None, hint="reading jobs...")
        self.poll()
        self.set_interval(self.console.config.job_poll_s, self._tick, name="jobs poll")

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.poll()

    def _tick(self) -> None:
        if self.is_current:
            self.poll()

    # -- polling -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="jobs-poll", name="following jobs")
    def poll(self) -> None:
        """List jobs and read the selected job's new events (files: this thread only)."""
        from reuse_console.engine.jobs.control import list_jobs

        jobs = list_jobs(self.console.lab)
        ids = [j.id for j in jobs]
        selected = self.selected if self.selected in ids else self._default_selection(jobs)
        snapshot = None
        if selected is not None:
            job = jobs[ids.index(selected)]
            follower = self._followers.setdefault(selected, JobFollower(selected))
            snapshot = follower.poll(job)
        system = system_line() if self.console.config.system_stats else ""
        self.post_message(self.Polled(jobs, snapshot, system))

    @staticmethod
    def _default_selection(jobs: list[Any]) -> str | None:
        running = [j for j in jobs if j.status == "running"]
        pick = (running or jobs)[-1:]
        return pick[0].id if pick else None

    @on(Polled)
    def _polled(self, message: Polled) -> None:
        self.jobs = message.jobs
        self._fill_table(message.jobs)
        view = self.query_one(JobView)
        if message.snapshot is None:
            view.show(None, hint=NO_JOBS)
            self.snapshot = None
            return
        if self.selected is None:
            self._select(message.snapshot.id)
        if message.snapshot.id == self.selected:
            self.snapshot = message.snapshot
            view.show(message.snapshot, message.system)

    def _fill_table(self, jobs: list[Any]) -> None:
        table = self.query_one("#jobs-table", DataTable)
        rows = tuple((j.id, j.status) for j in jobs)
        if rows == self._rows:
            return
        if [r[0] for r in rows] == [r[0] for r in self._rows]:
            for job in jobs:
                table.update_cell(
                    job.id, "status", Text(job.status, style=STATUS_STYLE.get(job.status, "")), update_width=True
                )
        else:
            table.clear()
            for job in jobs:
                table.add_row(
                    job.id,
                    Text(job.status, style=STATUS_STYLE.get(job.status, "")),
                    short_time(job.started),
                    " ".join(job.argv),
                    key=job.id,
                )
            if self.selected is not None and self.selected in {j.id for j in jobs}:
                table.move_cursor(row=table.get_row_index(self.selected))
        self._rows = rows

    def _select(self, job_id: str) -> None:
        self.selected = job_id
        table = self.query_one("#jobs-table", DataTable)
        if job_id in {j.id for j in self.jobs}:
            index = table.get_row_index(job_id)
            if table.cursor_row != index:
                table.move_cursor(row=index)

    @on(DataTable.RowHighlighted, "#jobs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        job_id = str(event.row_key.value)
        if job_id != self.selected:
            self.selected = job_id
            self.poll()

    def open_job(self, job_id: str) -> None:
        """Select `job_id` (from the Lab or the palette) and show it."""
        self.selected = job_id
        self.snapshot = None
        self.poll()

    # -- starting ------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="jobs-form", name="listing the lab")
    def read_form_options(self, form: str) -> None:
        lab = self.console.lab
        pair = suggest_pair(lab) if form == "scan" else None
        self.post_message(
            self.FormOptions(
                form,
                entry_choices(lab.entries("datasets")),
                entry_choices(lab.entries("checkpoints")),
                *(pair or (None, None)),
            )
        )

    def action_new_train(self) -> None:
        self.read_form_options("train")

    def action_new_scan(self) -> None:
        self.read_form_options("scan")

    @on(FormOptions)
    def _form_options(self, message: FormOptions) -> None:
        if message.form == "train":
            form: TrainForm | ScanForm = TrainForm(message.datasets)
        else:
            form = ScanForm(message.checkpoints, message.datasets, message.recipient, message.donor)

        def submitted(argv: list[str] | None) -> None:
            if argv:
                self.start(argv)

        self.app.push_screen(form, submitted)

    @work(thread=True, exclusive=False, exit_on_error=False, group="jobs-start", name="starting the job")
    def start(self, argv: list[str]) -> None:
        """Start `reuse-console <argv>` as a detached job."""
        from reuse_console.engine.jobs.control import start_job

        self.post_message(self.JobStarted(start_job(self.console.lab, argv)))

    @on(JobStarted)
    def _job_started(self, message: JobStarted) -> None:
        self.notify(f"started {message.job.id}", title="job")
        self.open_job(message.job.id)

    # -- acting on the selected job ------------------------------------------------------------

    def action_cancel_job(self) -> None:
        snap = self.snapshot
        if snap is None or snap.status != "running":
            self.notify("No running job selected.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel(snap.id)

        self.app.push_screen(
            ConfirmModal(f"Cancel job {snap.id}?\nIts processes get SIGTERM, then SIGKILL after 5 s.", "Cancel job"),
            answered,
        )

    @work(thread=True, exclusive=False, exit_on_error=False, group="jobs-cancel", name="cancelling the job")
    def cancel(self, job_id: str) -> None:
        from reuse_console.engine.jobs.control import cancel_job

        self.post_message(self.JobCancelled(cancel_job(self.console.lab, job_id)))

    @on(JobCancelled)
    def _job_cancelled(self, message: JobCancelled) -> None:
        self.notify(f"{message.job.id}: {message.job.status}", title="job")
        self.poll()

    def action_copy_command(self) -> None:
        snap = self.snapshot
        if snap is None or not snap.command:
            self.notify("No job selected.", severity="warning")
            return
        self.app.copy_to_clipboard(snap.command)
        self.notify(snap.command, title="copied (OSC 52)")

    def action_open_result(self) -> None:
        snap = self.snapshot
        if snap is None or not snap.result:
            self.notify("The selected job has no result yet.", severity="warning")
            return
        if snap.what.startswith("train"):
            self.console.open_layers(snap.result)
        elif snap.what.startswith("scan"):
            self.console.open_scan(snap.result)
        else:
            self.console.goto("lab")

    def palette_commands(self):
        yield ("Jobs: new training job", "Train a model as a background job", self.action_new_train)
        yield ("Jobs: new scan job", "Scan every layer and kind as a background job", self.action_new_scan)
        yield ("Jobs: cancel selected job", "SIGTERM, then SIGKILL", self.action_cancel_job)
        yield ("Jobs: copy command", "Copy the selected job's command line (OSC 52)", self.action_copy_command)
