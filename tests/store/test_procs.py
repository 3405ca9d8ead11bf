"""pid_alive: the one liveness check behind temp-file cleanup, run status and job status."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from reuse_console.store.procs import pid_alive


def test_own_process_is_alive_and_impossible_pids_are_not() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert not pid_alive(999_999_999)


def test_a_finished_child_not_yet_reaped_counts_as_dead() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 10
        while pid_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert not pid_alive(proc.pid), "a zombie has finished its work"
    finally:
        proc.wait()


def test_a_start_time_that_does_not_match_means_another_process() -> None:
    import psutil

    created = psutil.Process(os.getpid()).create_time()
    assert pid_alive(os.getpid(), created)
    assert not pid_alive(os.getpid(), created - 3600.0)
