"""`jobs`: run any reuse-console command detached, list, follow and cancel it."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

from ..options import JsonOpt, LabOpt, ProgressOpt
from ..output import emit_json, stderr, stdout

jobs_app = typer.Typer(
    name="jobs",
    help=(
        "Detached jobs: any reuse-console command run in its own session, so it keeps running when "
        "the console closes or the SSH link drops. Files: <lab>/jobs/ID.h5 (what), ID.events.jsonl "
        "(progress), ID.log (stderr), ID.exit.json (how it ended).\n\n"
        "Example: reuse-console jobs start -- train --data acdc --epochs 20"
    ),
    no_args_is_help=True,
)

STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "cancelled": "yellow", "lost": "magenta"}


def _status(text: str) -> str:
    return f"[{STATUS_STYLE.get(text, 'red')}]{text}[/]"


def _event_text(event: object) -> str:
    data = event.to_dict()  # type: ignore[attr-defined]
    kind = data.pop("type")
    return f"{kind}: " + "  ".join(f"{k}={v}" for k, v in data.items())


def _accepts_progress(root: Any, argv: list[str]) -> bool:
    """Resolve `argv` against the root command (`reuse-console`) and say whether it takes `--progress`."""
    command = root
    path: list[str] = []
    for token in argv:
        commands = getattr(command, "commands", None)  # a group (typer vendors its own click)
        if commands is None or token.startswith("-"):
            break
        if token not in commands:
            where = " ".join(["reuse-console", *path])
            raise UserError(f"unknown command {token!r} for `{where}` (see `{where} --help`)")
        path.append(token)
        command = commands[token]
    if getattr(command, "commands", None) is not None:
        raise UserError(f"`reuse-console {' '.join(path)}` needs a subcommand (see its --help)")
    return any("--progress" in getattr(p, "opts", ()) for p in command.params)


@jobs_app.command(
    "start",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def start(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(help="The reuse-console command and its options, after `--`.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Job id (default: command words + time).")] = None,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Start any reuse-console command as a detached job and print its id.

    The command runs with `--progress jsonl` (when it has that option) in its own session, with
    this lab and this working directory. Follow it with `jobs show ID`, stop it with `jobs cancel ID`.

    Example: reuse-console jobs start --name t1 -- train --data acdc --epochs 5
    """
    from reuse_console.engine.jobs.control import start_job

    if args[:1] == ["jobs"] and args[1:2] == ["start"]:
        raise UserError("a job cannot start another `jobs start`; give the command itself")
    job = start_job(Lab.from_option(lab), args, name, progress=_accepts_progress(ctx.find_root().command, args))
    if json_out:
        emit_json(job.to_dict())
        return
    stdout.print(job.id)
    stderr.print(f"started job {escape(job.id)} (pid {job.pid}): {escape(job.command)}")
    stderr.print(
        f"follow: reuse-console jobs show {escape(job.id)}    stop: reuse-console jobs cancel {escape(job.id)}"
    )


@jobs_app.command("ls")
def ls(lab: LabOpt = None, json_out: JsonOpt = False) -> None:
    """List the lab's jobs, oldest first, with their status (running, finished, failed, cancelled, lost)."""
    from reuse_console.engine.jobs.control import list_jobs

    jobs = list_jobs(Lab.from_option(lab))
    if json_out:
        emit_json([j.to_dict() for j in jobs])
        return
    if not jobs:
        stdout.print("No jobs yet. Start one with `reuse-console jobs start -- COMMAND ...`.")
        return
    table = Table(title="jobs", title_justify="left")
    for col in ("id", "status", "started", "pid", "command"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        status = _status(j.status) + (f" ({j.returncode})" if j.returncode not in (None, 0) else "")
        table.add_row(escape(j.id), status, j.started.replace("+00:00", "Z"), str(j.pid), escape(j.error or j.command))
    stdout.print(table)


@jobs_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="Job id, or a prefix naming one job.")],
    events: Annotated[int, typer.Option("--events", "-n", help="How many of the last events to show.")] = 10,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a job: its status, command line, last progress events and, if it failed, its log tail.

    Example: reuse-console jobs show train-acdc -n 20
    """
    from reuse_console.engine.jobs.control import get_job, read_events, read_log_tail

    job = get_job(Lab.from_option(lab), ref)
    evs, _ = read_events(job)
    last = evs[-events:] if events > 0 else []
    log = read_log_tail(job, 15) if job.status in ("failed", "lost", "unreadable") else []
    if json_out:
        emit_json({**job.to_dict(), "events": [e.to_dict() for e in last], "event_count": len(evs), "log_tail": log})
        return
    table = Table(title=f"job {escape(job.id)}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("status", _status(job.status))
    table.add_row("command", escape(job.command))
    table.add_row("started", job.started)
    if job.ended:
        table.add_row("ended", job.ended)
    if job.returncode is not None:
        table.add_row("returncode", str(job.returncode))
    table.add_row("pid", f"{job.pid} on {escape(job.host)}")
    table.add_row("files", f"{job.events_path}\n{job.log_path}")
    stdout.print(table)
    if last:
        stdout.print(f"last {len(last)} of {len(evs)} events:")
        for e in last:
            stdout.print("  " + escape(_event_text(e)), soft_wrap=True)
    if log:
        stdout.print("log tail:")
        for line in log:
            stdout.print("  " + escape(line), soft_wrap=True)


@jobs_app.command("cancel")
def cancel(
    ref: Annotated[str, typer.Argument(help="Job id, or a prefix naming one job.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    grace: Annotated[float, typer.Option("--grace", help="Seconds between SIGTERM and SIGKILL.")] = 5.0,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Stop a running job (SIGTERM to its process group, SIGKILL after --grace seconds).

    Example: reuse-console jobs cancel train-acdc --yes
    """
    from reuse_console.engine.jobs.cancel import cancel_job
    from reuse_console.engine.jobs.control import get_job

    the_lab = Lab.from_option(lab)
    job = get_job(the_lab, ref)
    if job.active and not yes:
        import sys

        if not sys.stdin.isatty():
            raise UserError(f"cancelling job {job.id} needs confirmation: add --yes")
        typer.confirm(f"Cancel job {job.id} ({job.command})?", abort=True)
    if not job.active:
        stderr.print(f"job {escape(job.id)} is not running (status {job.status})")
    else:
        job = cancel_job(the_lab, job.id, grace_s=grace)
        stderr.print(f"job {escape(job.id)}: {job.status}")
    if json_out:
        emit_json(job.to_dict())


@jobs_app.command("sleep", hidden=True)
def sleep(
    seconds: Annotated[float, typer.Argument(help="How long to run.")],
    tick: Annotated[float, typer.Option("--tick", help="Seconds between progress events.")] = 1.0,
    exit_code: Annotated[int, typer.Option("--exit-code", help="Exit with this code at the end.")] = 0,
    ignore_sigterm: Annotated[
        bool, typer.Option("--ignore-sigterm", help="Ignore SIGTERM, so only a cancel's SIGKILL stops it.")
    ] = False,
    progress: ProgressOpt = "rich",
) -> None:
    """Diagnostic: do nothing for SECONDS, reporting a progress event every --tick seconds.

    Used by the job tests (and handy to check that detached jobs, events and cancel work on a
    machine) without training anything. Example: reuse-console jobs start -- jobs sleep 30
    """
    from reuse_console.engine.core.events import Finished, Started, StepEnd

    from ..progress import make_reporter

    if ignore_sigterm:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    total = max(1, round(seconds / tick)) if seconds > 0 else 0
    t0 = time.monotonic()
    with make_reporter(progress) as report:
        report(Started(what="sleep", total=total, unit="ticks"))
        for i in range(1, total + 1):
            time.sleep(max(0.0, t0 + i * tick - time.monotonic()))
            report(
                StepEnd(
                    epoch=1, step=i, steps_per_epoch=total, global_step=i, total_steps=total, loss=0.0, images_per_s=0.0
                )
            )
        report(Finished(what="sleep", seconds=round(time.monotonic() - t0, 3)))
    if exit_code:
        raise typer.Exit(exit_code)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")
