"""The process that babysits one job: `python -m reuse_console.engine.jobs.runner LAB ID -- ARGS...`.

Started by `engine.jobs.start_job` as a session leader. It runs `reuse-console ARGS...` as its
child (same process group, so a cancel reaches both), stdout to `jobs/ID.events.jsonl`, stderr to
`jobs/ID.log`, and when the child ends writes `jobs/ID.exit.json` atomically. The child gets the
OpenMP/MKL thread variables its `--threads` asks for, whoever started this runner. It outlives
the console: it has no terminal, and SIGTERM/SIGHUP/SIGINT only make it wait for the child to
end (the child, which gets the same signal from a group cancel, decides how to stop).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reuse_console.engine.jobs.processes import threads_env, write_json_atomic
from reuse_console.store.h5 import now_iso


def _note(log: Path, text: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"[jobrunner {now_iso()}] {text}\n")


def run(lab_root: Path, job_id: str, argv: list[str]) -> int:
    """Run the job's command to the end and record how it ended; returns its return code."""
    folder = lab_root / "jobs"
    events = folder / f"{job_id}.events.jsonl"
    log = folder / f"{job_id}.log"
    # A Python handler (unlike SIG_IGN) is reset to the default in the child at exec, so the
    # command itself still stops on SIGTERM while this process stays to write the exit file.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    t0 = time.time()
    try:
        with open(events, "ab") as out, open(log, "ab") as err:
            child = subprocess.Popen(
                [sys.executable, "-m", "reuse_console.tui.cli", *argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, **threads_env(argv)},
            )
        returncode = child.wait()
    except OSError as exc:
        _note(log, f"could not start the command: {exc}")
        returncode = 127
    write_json_atomic(
        folder / f"{job_id}.exit.json",
        {"returncode": returncode, "ended": now_iso(), "seconds": round(time.time() - t0, 3)},
    )
    return returncode


def main(args: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if args is None else args)
    if len(args) < 3 or args[2] != "--":
        print("usage: python -m reuse_console.engine.jobs.runner LAB ID -- ARGS...", file=sys.stderr)
        return 2
    return run(Path(args[0]), args[1], args[3:])


if __name__ == "__main__":
    sys.exit(0 if main() == 0 else 1)
