"""Detached jobs: `reuse-console ...` commands that outlive the console that started them.

`start_job` starts `python -m reuse_console.engine.jobs.runner` in a new session (no controlling
terminal, so closing the console or dropping the SSH link does not touch it). The runner starts
the real command as its child in the same process group, sends its stdout (JSON-lines progress
events) to `jobs/<id>.events.jsonl` and its stderr to `jobs/<id>.log`, waits, and writes
`jobs/<id>.exit.json` atomically. The job's description, `jobs/<id>.h5`, is written once and never
changed; everything that changes lives in those side files, so the status is always derived:

    exit.json present        finished (returncode 0) | failed | cancelled (cancel marker present)
    runner process alive     running
    cancel marker, no exit   cancelled (killed before the runner could write exit.json)
    otherwise                lost (killed, machine rebooted)

Layout: see store/SCHEMA.md ("jobs").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reuse_console.engine.core.events import Event, from_dict
from reuse_console.engine.jobs.processes import (
    alive,
    group_members,
    process_created,
    read_json,
    reap,
    spawned,
    threads_env,
    write_json_atomic,
)
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, now_iso, open_h5, set_json, stamp
from reuse_console.store.lab import Lab, check_name, next_free_name
from reuse_console.store.listing_index import cached_read

KIND = "job"
STATUSES = ("running", "finished", "failed", "cancelled", "lost")
PROGRAM = "reuse-console"


@dataclass
class Job:
    """A detached job as seen now: what it runs and how it is doing."""

    id: str
    argv: list[str]
    pid: int
    started: str
    status: str
    returncode: int | None
    events_path: Path
    log_path: Path
    command: str = ""  # the exact command line, copyable into a shell
    host: str = ""
    pgid: int = 0
    ended: str | None = None
    error: str | None = None  # set when the job file itself is unreadable (status "unreadable")
    process_created: float = 0.0  # the runner's start time, to tell it from a reused pid
    cwd: str = ""  # the working directory the command runs in (relative paths in argv are from there)

    @property
    def active(self) -> bool:
        return self.status == "running"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["events_path"] = str(self.events_path)
        data["log_path"] = str(self.log_path)
        return data


# -- paths -------------------------------------------------------------------------------------


def _side(folder: Path, job_id: str, suffix: str) -> Path:
    return folder / f"{job_id}{suffix}"


def events_path(lab: Lab, job_id: str) -> Path:
    return _side(lab.folder("jobs"), job_id, ".events.jsonl")


# -- starting ----------------------------------------------------------------------------------


def command_line(argv: list[str]) -> str:
    """The shell command that runs `argv` by hand (what the console shows and copies)."""
    return shlex.join([PROGRAM, *argv])


def _base_name(argv: list[str]) -> str:
    words: list[str] = []
    for token in argv:
        if token.startswith("-") or len(words) == 3:
            break
        words.append(re.sub(r"[^A-Za-z0-9._+-]+", "-", token).strip("-.") or "x")
    return "-".join(words) or "job"


def _reserve(folder: Path, job_id: str) -> bool:
    """Claim an id by creating its events file exclusively (safe against concurrent starts)."""
    if _side(folder, job_id, ".h5").exists():
        return False
    try:
        fd = os.open(
            _side(folder, job_id, ".events.jsonl"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666
        )  # the umask decides
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _new_id(folder: Path, argv: list[str], name: str | None) -> str:
    if name is not None:
        check_name(name)
        if not _reserve(folder, name):
            raise UserError(f"job {name!r} already exists (choose another --name)")
        return name
    base = f"{_base_name(argv)}-{time.strftime('%m%d-%H%M%S')}"[:90]
    return next_free_name(base, lambda job_id: _reserve(folder, job_id))


def start_job(
    lab: Lab,
    argv: list[str],
    name: str | None = None,
    *,
    progress: bool = True,
    env: dict[str, str] | None = None,
) -> Job:
    """Run `reuse-console <argv> --progress jsonl` detached; return at once with the running job.

    `progress=False` leaves out `--progress jsonl` (for commands without that option). The job
    uses this lab (REUSE_LAB is set for it) and the caller's working directory; with `--threads N`
    in `argv` also OMP_NUM_THREADS=MKL_NUM_THREADS=N, so nothing starts more threads before the
    command sets torch's.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise UserError("no command to run: give the reuse-console arguments, e.g. `train --data acdc`")
    if name is not None:
        check_name(name)  # before the jobs folder exists: a refused name leaves the lab as it was
    folder = lab.folder("jobs", create=True)
    job_id = _new_id(folder, argv, name)
    child_argv = [*argv, "--progress", "jsonl"] if progress else list(argv)
    root = lab.root.resolve()
    log = _side(folder, job_id, ".log")
    child_env = {**os.environ, **(env or {}), **threads_env(argv), "REUSE_LAB": str(root), "PYTHONUNBUFFERED": "1"}
    started = now_iso()
    with open(log, "ab") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reuse_console.engine.jobs.runner", str(root), job_id, "--", *child_argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_fh,
            start_new_session=True,
            close_fds=True,
            env=child_env,
        )
    info = {
        "argv": argv,
        "child_argv": child_argv,
        "command": command_line(argv),  # what the user asked for, pasteable by hand
        "started": started,
        "pid": proc.pid,
        "pgid": proc.pid,  # session leader: its pid is the process group id
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
        "process_created": process_created(proc.pid),
    }
    try:
        _write_job_file(folder, job_id, info)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    spawned.append(proc)
    return _job_from_info(folder, job_id, info)


def _write_job_file(folder: Path, job_id: str, info: dict[str, Any]) -> None:
    with atomic_h5(_side(folder, job_id, ".h5")) as f:
        stamp(f, KIND, {"command": info["command"], "cwd": info["cwd"]})
        for key in ("command", "started", "host", "cwd"):
            f.attrs[key] = info[key]
        f.attrs["pid"] = int(info["pid"])
        f.attrs["pgid"] = int(info["pgid"])
        f.attrs["process_created"] = float(info["process_created"])
        set_json(f, "argv", info["argv"])
        set_json(f, "child_argv", info["child_argv"])
        set_json(f, "summary", {"command": info["command"], "host": info["host"], "pid": info["pid"]})


# -- status ------------------------------------------------------------------------------------


def _status(folder: Path, job_id: str, info: dict[str, Any]) -> tuple[str, int | None, str | None]:
    cancelled = _side(folder, job_id, ".cancel").exists()
    for attempt in range(2):
        done = read_json(_side(folder, job_id, ".exit.json"))
        if done is not None:
            rc = done.get("returncode")
            status = "finished" if rc == 0 else ("cancelled" if cancelled else "failed")
            return status, rc, done.get("ended")
        if attempt == 1:
            break
        if info.get("host") != socket.gethostname():
            return "running", None, None  # another machine's job: only its exit file can end it
        if alive(int(info.get("pid", 0)), float(info.get("process_created", 0.0))):
            return "running", None, None
        # the runner just ended: look once more for the exit file it writes before exiting
    return ("cancelled" if cancelled else "lost"), None, None


def _job_from_info(folder: Path, job_id: str, info: dict[str, Any]) -> Job:
    status, rc, ended = _status(folder, job_id, info)
    return Job(
        id=job_id,
        argv=list(info.get("argv", [])),
        pid=int(info.get("pid", 0)),
        started=str(info.get("started", "")),
        status=status,
        returncode=rc,
        events_path=_side(folder, job_id, ".events.jsonl"),
        log_path=_side(folder, job_id, ".log"),
        command=str(info.get("command", "")),
        host=str(info.get("host", "")),
        pgid=int(info.get("pgid", 0)),
        ended=ended,
        process_created=float(info.get("process_created", 0.0)),
        cwd=str(info.get("cwd", "")),
    )


def _read_info(path: Path) -> tuple[dict[str, Any], bool]:
    """A job file's attributes (they never change: its status lives in side files), or its error."""
    try:
        with open_h5(path) as f:
            info = {
                "argv": get_json(f, "argv", []),
                "command": attr_str(f, "command"),
                "started": attr_str(f, "started"),
                "host": attr_str(f, "host"),
                "cwd": attr_str(f, "cwd"),
                "pid": int(f.attrs.get("pid", 0)),
                "pgid": int(f.attrs.get("pgid", 0)),
                "process_created": float(f.attrs.get("process_created", 0.0)),
            }
    except Exception as exc:  # one damaged job file never breaks the list
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"error": f"unreadable: {reason}"}, False
    return info, True


def _job(folder: Path, path: Path, info: dict[str, Any]) -> Job:
    job_id = path.name[: -len(".h5")]
    if "error" in info:
        return Job(
            id=job_id,
            argv=[],
            pid=0,
            started="",
            status="unreadable",
            returncode=None,
            events_path=_side(folder, job_id, ".events.jsonl"),
            log_path=_side(folder, job_id, ".log"),
            error=str(info["error"]),
        )
    return _job_from_info(folder, job_id, info)


def _load(folder: Path, path: Path) -> Job:
    return _job(folder, path, _read_info(path)[0])


def list_jobs(lab: Lab) -> list[Job]:
    """Every job of the lab, oldest first (job files' attributes from the listing index,
    store/listing_index.py: a lab of thousands of jobs lists in a stat per file)."""
    reap()
    folder = lab.folder("jobs")
    paths = lab.files("jobs")
    infos = cached_read(folder, paths, _read_info, name="jobs")
    jobs = [_job(folder, p, info) for p, info in zip(paths, infos, strict=True)]
    return sorted(jobs, key=lambda j: (j.started, j.id))


def get_job(lab: Lab, ref: str) -> Job:
    """A job by id (`jobs/` prefix allowed) or by a prefix that names exactly one job."""
    reap()
    ref = ref.removeprefix("jobs/")
    check_name(ref)
    folder = lab.folder("jobs")
    path = _side(folder, ref, ".h5")
    if path.exists():
        return _load(folder, path)
    hits = [p for p in lab.files("jobs") if p.name.startswith(ref)]
    if len(hits) == 1:
        return _load(folder, hits[0])
    if hits:
        names = ", ".join(p.name[:-3] for p in hits[:5])
        raise UserError(f"job {ref!r} is ambiguous: {names}{' ...' if len(hits) > 5 else ''}")
    raise NotFound(f"no job {ref!r} in lab {lab.root} (see `reuse-console jobs ls`)")


# -- events ------------------------------------------------------------------------------------


def read_events(job: Job, since: int = 0) -> tuple[list[Event], int]:
    """Events written after byte offset `since`, and the offset to pass next time.

    Only complete lines are read (a line still being written waits for the next call); lines
    that are not progress events (other output of the command) are skipped.
    """
    try:
        with open(job.events_path, "rb") as fh:
            fh.seek(since)
            chunk = fh.read()
    except FileNotFoundError:
        return [], since
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], since
    events: list[Event] = []
    for line in chunk[: end + 1].splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            events.append(from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return events, since + end + 1


def read_log_tail(job: Job, lines: int = 20) -> list[str]:
    """The last lines of the job's stderr (where errors and tracebacks go)."""
    try:
        with open(job.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


# -- cancelling --------------------------------------------------------------------------------


def _wait_until_done(lab: Lab, job: Job, seconds: float) -> Job:
    """Poll until the job has ended and every process of its group is gone (or `seconds` pass)."""
    deadline = time.monotonic() + seconds
    while True:
        job = get_job(lab, job.id)
        if not job.active and not group_members(job.pgid):
            return job
        if time.monotonic() >= deadline:
            return job
        time.sleep(0.1)


def request_stop(lab: Lab, job: Job) -> None:
    """Record that `job` was cancelled (its status reads `cancelled`, not `failed`)."""
    if job.host != socket.gethostname():
        raise UserError(f"job {job.id} runs on host {job.host}; cancel it there")
    write_json_atomic(_side(lab.folder("jobs"), job.id, ".cancel"), {"requested": now_iso(), "by_pid": os.getpid()})


def stop_job(lab: Lab, job: Job, grace_s: float = 5.0) -> Job:
    """SIGTERM to the job's process group, SIGKILL after `grace_s` seconds; the job as it ends."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pgid, signal.SIGTERM)
    job = _wait_until_done(lab, job, grace_s)
    if job.active or group_members(job.pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pgid, signal.SIGKILL)
        job = _wait_until_done(lab, job, 5.0)
    reap()  # if this process started the job, its runner is now a zombie until reaped here
    return job
