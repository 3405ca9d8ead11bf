"""The Jobs screen: start jobs from forms, follow them live, cancel, resume or restart them.

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
from .form_choices import FORM_COMMANDS, make_form, read_choices
from .grid_form import GridForm
from .lab import short_time
from .modals import ConfirmModal

NO_JOBS = (
    "No jobs yet. t starts a training job, s a scan, g a grid, a an alignment,\n"
    "k a CKA comparison.\n\n"
    "Each job is a separate `reuse-console ...` process in its own session: it\n"
    "keeps running when the console closes or the SSH link drops, and the\n"
    "console finds it again when reopened."
)


class JobsScreen(ConsoleScreen):
    """Jobs of the lab and the live view of the selected one."""

    MODE = "jobs"
    BINDINGS: ClassVar = [
        Binding("t", "new_train", "Train", id="jobs.train"),
        Binding("s", "new_scan", "Scan", id="jobs.scan"),
        Binding("g", "new_grid", "Grid", id="jobs.grid"),
        Binding("a", "new_align", "Align", id="jobs.align", show=False),  # 80 columns: the footer keeps x y o
        Binding("k", "new_cka", "CKA", id="jobs.cka", show=False),
        Binding("r", "resume_job", "Resume", id="jobs.resume"),
        Binding("e", "edit_job", "Edit", id="jobs.edit"),
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
        """Lab objects a form offers (form_choices.read_choices), read in a worker; `preset`: the
        argv of a job to restart with edits."""

        def __init__(self, form: str, choices: dict[str, Any], preset: list[str] | None = None) -> None:
            super().__init__()
            self.form = form
            self.choices = choices
            self.preset = preset

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
    def read_form_options(self, form: str, preset: list[str] | None = None) -> None:
        self.post_message(self.FormOptions(form, read_choices(self.console.lab, form), preset))

    def action_new_train(self) -> None:
        self.read_form_options("train")

    def action_new_scan(self) -> None:
        self.read_form_options("scan")

    def action_new_grid(self) -> None:
        self.read_form_options("grid")

    def action_new_align(self) -> None:
        self.read_form_options("align")

    def action_new_cka(self) -> None:
        self.read_form_options("cka")

    @on(FormOptions)
    def _form_options(self, message: FormOptions) -> None:
        form = make_form(message.form, message.choices, self.console.lab, message.preset)

        def submitted(argv: list[str] | None) -> None:
            study = form.study if isinstance(form, GridForm) else None
            if argv and study is not None:
                self.start(argv, study=study)
            elif argv:
                self.start(argv)

        self.app.push_screen(form, submitted)

    @work(thread=True, exclusive=False, exit_on_error=False, group="jobs-start", name="starting the job")
    def start(self, argv: list[str], study: dict[str, Any] | None = None) -> None:
        """Start `reuse-console <argv>` as a detached job (a grid form's study written first)."""
        from reuse_console.engine.jobs.control import start_job

        if study is not None:
            from reuse_console.engine.grids.study_toml import write_study

            write_study(self.console.lab, study)
        self.post_message(self.JobStarted(start_job(self.console.lab, argv)))

    @on(JobStarted)
    def _job_started(self, message: JobStarted) -> None:
        self.notify(f"started {message.job.id}", title="job")
        self.open_job(message.job.id)

    # -- acting on the selected job ------------------------------------------------------------

    def _selected_job(self) -> Any | None:
        return next((j for j in self.jobs if j.id == (self.snapshot.id if self.snapshot else None)), None)

    def action_resume_job(self) -> None:
        snap = self.snapshot
        if snap is None:
            self.notify("No job selected.", severity="warning")
            return
        self.resume(snap.id, dict(snap.info))

    @work(thread=True, exclusive=False, exit_on_error=False, group="jobs-start", name="resuming the job")
    def resume(self, job_id: str, info: dict[str, Any]) -> None:
        """Start the command that continues a stopped train, scan or grid job (engine/jobs/resume.py)."""
        from reuse_console.engine.jobs.control import get_job, start_job
        from reuse_console.engine.jobs.resume import resume_argv

        lab = self.console.lab
        argv = resume_argv(get_job(lab, job_id), info if info.get("run") else None)
        self.post_message(self.JobStarted(start_job(lab, argv)))

    def action_edit_job(self) -> None:
        job = self._selected_job()
        if job is None or not job.argv:
            self.notify("No job selected.", severity="warning")
            return
        command = job.argv[0]
        if command not in FORM_COMMANDS:
            self.notify(f"No form for {command} jobs: copy its command (y) and edit it in a shell.", severity="warning")
            return
        if "--resume" in job.argv:
            self.notify("This job resumed another: edit the job that started it.", severity="warning")
            return
        self.read_form_options(command, list(job.argv))

    def action_cancel_job(self) -> None:
        snap = self.snapshot
        if snap is None or snap.status != "running":
            self.notify("No running job selected.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel(snap.id)

        question = f"Cancel job {snap.id}?\nIts processes get SIGTERM, then SIGKILL after 5 s."
        if snap.command.split()[1:2] == ["grid"]:  # engine/jobs/cluster_cancel.py
            question += "\nA grid on SLURM or Ray has its cluster jobs cancelled too; finished cells are kept."
        self.app.push_screen(ConfirmModal(question, "Cancel job"), answered)

    @work(thread=True, exclusive=False, exit_on_error=False, group="jobs-cancel", name="cancelling the job")
    def cancel(self, job_id: str) -> None:
        from reuse_console.engine.jobs.cancel import cancel_job

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
        yield ("Jobs: new grid job", "Run or build a transfer study (Table 3)", self.action_new_grid)
        yield ("Jobs: new alignment job", "Reorder a donor's channels to a recipient's", self.action_new_align)
        yield ("Jobs: new CKA job", "Functional similarity of models per layer", self.action_new_cka)
        yield ("Jobs: resume selected job", "Continue a stopped train, scan or grid", self.action_resume_job)
        yield ("Jobs: edit and restart selected job", "Its form, filled from its command", self.action_edit_job)
        yield ("Jobs: cancel selected job", "SIGTERM, then SIGKILL", self.action_cancel_job)
        yield ("Jobs: copy command", "Copy the selected job's command line (OSC 52)", self.action_copy_command)
