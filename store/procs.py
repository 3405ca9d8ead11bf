"""Is a process still there? One answer for the lab's temp files, run files and detached jobs.

A zombie counts as dead (it has finished; only its exit status is left), and with a start time
the pid must still name the same process, so a pid reused by the system is not mistaken for ours.
"""

from __future__ import annotations

import os


def pid_alive(pid: int, created: float | None = None) -> bool:
    """Is `pid` a live, non-zombie process (started at `created`, Unix seconds, when given)?

    Uses psutil, falling back to `os.kill(pid, 0)` without it (then zombies and start times
    cannot be told apart, and a pid we may not signal counts as alive).
    """
    if pid <= 0:
        return False
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not created or abs(proc.create_time() - created) < 1.0
    except Exception:  # NoSuchProcess, AccessDenied on a foreign pid
        return False
