"""Process facts for detached jobs, kept apart from the job bookkeeping in jobs.py.

Whether a pid is still the runner we started (not a zombie, not a reused pid), which live
processes a process group has, reaping runners this process started, the small JSON side
files that are written all-or-nothing, and the environment a job's command starts in.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from reuse_console.engine.core.device import thread_env
from reuse_console.store.h5 import atomic_path
from reuse_console.store.procs import pid_alive


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a small JSON file all-or-nothing (temp file in the same folder, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON side file, or None while it does not exist (or is not JSON)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def threads_env(argv: list[str]) -> dict[str, str]:
    """OMP_NUM_THREADS/MKL_NUM_THREADS for a command whose argv says `--threads N` (the last one
    counts, as for the command), so OpenMP and MKL start with N threads before torch reads the
    option; {} when it does not say (or says something the command will refuse)."""
    threads: int | None = None
    for i, token in enumerate(argv):
        if token == "--":  # what follows is positional
            break
        if token == "--threads":
            value = argv[i + 1] if i + 1 < len(argv) else ""
        elif token.startswith("--threads="):
            value = token.partition("=")[2]
        else:
            continue
        threads = int(value) if value.isdigit() and int(value) >= 1 else None
    return thread_env(threads) if threads is not None else {}


# Runners started by this process: polled now and then so finished ones do not linger as
# zombies in a long-lived console (the jobs themselves never depend on this list).
spawned: list[subprocess.Popen] = []


def reap() -> None:
    """Collect the exit status of finished runners this process started."""
    spawned[:] = [p for p in spawned if p.poll() is None]


def process_created(pid: int) -> float:
    """A process's start time (Unix seconds), 0.0 when unknown: with the pid, it names one process."""
    with contextlib.suppress(Exception):
        import psutil

        return float(psutil.Process(pid).create_time())
    return 0.0


def alive(pid: int, created: float) -> bool:
    """Is `pid` still the runner we started (not a zombie, not a reused pid)?"""
    return pid_alive(pid, created)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`: the runner, the command, its workers."""
    if pgid <= 0:
        return []
    try:
        import psutil
    except ImportError:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.info["pid"]) == pgid:
                members.append(proc.info["pid"])
        except (ProcessLookupError, psutil.Error):
            continue
    return members
