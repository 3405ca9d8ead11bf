"""Going on with a stopped job: the command that resumes it, and the grid a job runs.

Every long command can continue where a killed or cancelled process left off (`train --resume
RUN`, `scan ... --resume`, `grid STUDY --resume`), so resuming a job is starting that command as
a new job; nothing here touches the old job's files. Reading a job's argv is plain parsing,
except `grid_of`, which loads the study the grid runs (torch: call it from a worker thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from reuse_console.engine.jobs.control import Job, read_events
from reuse_console.store.errors import UserError

if TYPE_CHECKING:
    from reuse_console.engine.grids.study import Study

RESUMABLE = ("train", "scan", "grid")
STOPPED = ("cancelled", "lost", "failed")
TRAIN_RESUME_KEEPS = ("--device", "--precision", "--workers", "--threads")  # what `train --resume` still reads
# grid options that take a value (so the study path is the first token that is neither an option nor one)
GRID_VALUED = (
    "--devices",
    "--name",
    "--device",
    "--precision",
    "--workers",
    "--threads",
    "--progress",
    "--lab",
    "--executor",
    "--ray-address",
    "--partition",
)


def option(argv: list[str], flag: str) -> str | None:
    """The value of the last `flag VALUE` or `flag=VALUE` in argv (None when absent)."""
    value: str | None = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith(flag + "="):
            value = token.partition("=")[2]
    return value


def started_info(job: Job) -> dict[str, Any]:
    """The `info` of the job's first Started event ({} when it wrote none)."""
    from reuse_console.engine.core.events import Started

    events, _ = read_events(job, 0)
    return next((dict(e.info) for e in events if isinstance(e, Started)), {})


def resume_argv(job: Job, info: dict[str, Any] | None = None) -> list[str]:
    """The command that continues a stopped `train`, `scan` or `grid` job; UserError for others.

    `info`: the job's Started info when the caller has it (the run name of an unnamed train job)."""
    if job.status not in STOPPED:
        state = "is still running" if job.status == "running" else f"is {job.status}: nothing to resume"
        raise UserError(f"job {job.id} {state}")
    argv = list(job.argv)
    command = argv[0] if argv else ""
    if command == "train":
        if option(argv, "--resume"):
            return argv
        run = option(argv, "--name") or (info if info is not None else started_info(job)).get("run")
        if not run:
            raise UserError(f"job {job.id} stopped before its run was named: start it again instead")
        kept: list[str] = []
        for flag in TRAIN_RESUME_KEEPS:
            value = option(argv, flag)
            if value is not None:
                kept += [flag, value]
        return ["train", "--resume", str(run), *kept]
    if command in ("scan", "grid"):
        return argv if "--resume" in argv else [*argv, "--resume"]
    raise UserError(f"{command or 'this'} jobs cannot be resumed (only {', '.join(RESUMABLE)}): start it again")


def grid_path(job: Job) -> Path | None:
    """The study file a grid job runs, resolved against its working directory (None: not a grid)."""
    argv = list(job.argv)
    if not argv or argv[0] != "grid":
        return None
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
        elif token in GRID_VALUED:
            skip = True
        elif not token.startswith("-"):
            path = Path(token).expanduser()
            return path if path.is_absolute() or not job.cwd else Path(job.cwd) / path
    return None


def grid_of(job: Job) -> tuple[Study, str] | None:
    """The study a grid job runs and its experiment id (None when not a grid, or unreadable)."""
    from reuse_console.engine.grids.study import load_study

    path = grid_path(job)
    if path is None:
        return None
    try:
        study = load_study(path)
    except UserError:
        return None
    return study, option(job.argv, "--name") or study.name
