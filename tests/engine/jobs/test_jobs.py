"""Detached jobs with real processes: run to the end, fail, get cancelled, get lost, outlive their parent.

The commands are cheap: `ls` and the hidden diagnostic `jobs sleep SECONDS --tick T`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from reuse_console.engine.core.events import Finished, Started, StepEnd
from reuse_console.engine.jobs.cancel import cancel_job
from reuse_console.engine.jobs.control import (
    Job,
    get_job,
    list_jobs,
    read_events,
    read_log_tail,
    start_job,
)
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.h5 import atomic_h5, set_json, stamp
from reuse_console.store.lab import Lab


def _wait(lab: Lab, job_id: str, timeout: float = 90.0) -> Job:
    deadline = time.monotonic() + timeout
    job = get_job(lab, job_id)
    while job.active and time.monotonic() < deadline:
        time.sleep(0.1)
        job = get_job(lab, job_id)
    assert not job.active, f"job {job_id} still running after {timeout} s"
    return job


def _wait_for_event(job: Job, kind: type, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events, _ = read_events(job)
        if any(isinstance(e, kind) for e in events):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind.__name__} event from job {job.id}")


def _group_gone(pgid: int) -> bool:
    """No live process is left in process group `pgid` (zombies waiting for init do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rpartition(")")[2].split()[:3]
        if int(group) == pgid and state != "Z":
            return False
    return True


def test_job_runs_to_the_end_and_its_events_are_tailed(lab: Lab) -> None:
    job = start_job(lab, ["jobs", "sleep", "0.3", "--tick", "0.1"], name="nap")
    assert job.id == "nap" and job.status == "running"
    assert job.command == "reuse-console jobs sleep 0.3 --tick 0.1"  # the copyable command, no --progress
    done = _wait(lab, "nap")
    assert (done.status, done.returncode) == ("finished", 0)
    assert done.ended and done.ended >= done.started

    events, offset = read_events(done)
    assert [type(e) for e in events] == [Started, StepEnd, StepEnd, StepEnd, Finished]
    assert [e.global_step for e in events if isinstance(e, StepEnd)] == [1, 2, 3]
    assert offset == done.events_path.stat().st_size
    assert read_events(done, offset) == ([], offset)
    (entry,) = lab.entries("jobs")  # the job file is an ordinary lab object
    assert entry.id == "nap" and entry.summary["command"] == done.command


def test_read_events_skips_partial_lines_and_other_output(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    job = Job(
        id="j", argv=[], pid=0, started="", status="running", returncode=None, events_path=path, log_path=tmp_path / "l"
    )
    assert read_events(job) == ([], 0)
    first = Started(what="train", total=4).to_json() + "\n"
    step = StepEnd(
        epoch=1, step=1, steps_per_epoch=4, global_step=1, total_steps=4, loss=0.5, images_per_s=9.0
    ).to_json()
    path.write_text(first + "not an event\n" + '{"type": "unknown"}\n' + step[:20])
    events, offset = read_events(job)
    assert events == [Started(what="train", total=4)]
    assert offset == len((first + "not an event\n" + '{"type": "unknown"}\n').encode())
    with open(path, "a") as fh:
        fh.write(step[20:] + "\n")
    more, offset2 = read_events(job, offset)
    assert [e.loss for e in more] == [0.5] and offset2 == path.stat().st_size


def test_failing_commands_are_failed_with_their_log(lab: Lab) -> None:
    a = start_job(lab, ["jobs", "sleep", "0.1", "--tick", "0.1", "--exit-code", "3"], name="three")
    b = start_job(lab, ["jobs", "sleep", "not-a-number"], name="bad-arg")
    a, b = _wait(lab, a.id), _wait(lab, b.id)
    assert (a.status, a.returncode) == ("failed", 3)
    assert (b.status, b.returncode) == ("failed", 2)
    assert "Invalid value for 'seconds'" in "\n".join(read_log_tail(b))  # the command's stderr


def test_command_without_progress_option_uses_the_jobs_lab(lab: Lab) -> None:
    with atomic_h5(lab.path("datasets", "acdc")) as f:
        stamp(f, "dataset")
        set_json(f, "summary", {"subjects": 4})
    job = _wait(lab, start_job(lab, ["ls", "datasets", "--json"], progress=False).id)
    assert job.status == "finished"
    assert read_events(job)[0] == []  # plain output is not mistaken for events
    listing = json.loads(job.events_path.read_text())
    assert [(r["id"], r["summary"]) for r in listing] == [("acdc", {"subjects": 4})]


def test_cancel_stops_the_whole_process_group(lab: Lab) -> None:
    job = start_job(lab, ["jobs", "sleep", "120", "--tick", "0.2"], name="long")
    _wait_for_event(job, StepEnd)
    runner = psutil.Process(job.pid)
    (command,) = runner.children()  # the runner and the command, one process group
    assert os.getpgid(command.pid) == job.pgid == job.pid
    cancelled = cancel_job(lab, "long", grace_s=10)
    assert cancelled.status == "cancelled"
    assert cancelled.returncode == -signal.SIGTERM  # the command died of SIGTERM; the runner recorded it
    assert _group_gone(job.pgid)
    assert cancel_job(lab, "long").status == "cancelled"  # cancelling again changes nothing


def test_cancel_escalates_to_sigkill(lab: Lab) -> None:
    job = start_job(lab, ["jobs", "sleep", "120", "--tick", "0.2", "--ignore-sigterm"], name="stubborn")
    _wait_for_event(job, StepEnd)
    cancelled = cancel_job(lab, job.id, grace_s=0.5)
    assert cancelled.status == "cancelled" and cancelled.returncode is None  # runner killed too: no exit file
    assert _group_gone(job.pgid)


def test_killed_runner_is_lost(lab: Lab) -> None:
    job = start_job(lab, ["jobs", "sleep", "120", "--tick", "0.2"], name="doomed")
    _wait_for_event(job, StepEnd)
    os.killpg(job.pgid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while not _group_gone(job.pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get_job(lab, "doomed").status == "lost"


def test_job_outlives_the_process_that_started_it(lab: Lab) -> None:
    starter = textwrap.dedent(
        """
        import sys
        from reuse_console.engine.jobs.control import start_job
        from reuse_console.store.lab import Lab
        job = start_job(Lab(sys.argv[1]), ["jobs", "sleep", "1.5", "--tick", "0.3"], name="orphan")
        print(job.pid, flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", starter, str(lab.root)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert get_job(lab, "orphan").status == "running"  # the starter is gone, the job is not
    done = _wait(lab, "orphan")
    assert (done.status, done.returncode) == ("finished", 0)
    steps = [e for e in read_events(done)[0] if isinstance(e, StepEnd)]
    assert [e.global_step for e in steps] == [1, 2, 3, 4, 5]


def test_lookup_and_listing(lab: Lab) -> None:
    assert list_jobs(lab) == []
    a = start_job(lab, ["jobs", "sleep", "0"], name="train-a")
    b = start_job(lab, ["jobs", "sleep", "0"], name="train-b")
    with pytest.raises(UserError, match="already exists"):
        start_job(lab, ["jobs", "sleep", "0"], name="train-a")
    with pytest.raises(UserError, match="no command"):
        start_job(lab, [])
    auto = start_job(lab, ["jobs", "sleep", "0"])
    assert auto.id.startswith("jobs-sleep-0-")
    for job in (a, b, auto):
        _wait(lab, job.id)
    assert get_job(lab, "jobs/train-b").id == "train-b"
    assert get_job(lab, "jobs-sl").id == auto.id  # a unique prefix is enough
    with pytest.raises(UserError, match="ambiguous"):
        get_job(lab, "train")
    with pytest.raises(NotFound, match="no job 'zzz'"):
        get_job(lab, "zzz")
    lab.path("jobs", "broken").write_bytes(b"garbage")
    listed = {j.id: j for j in list_jobs(lab)}
    assert set(listed) == {"train-a", "train-b", auto.id, "broken"}
    assert listed["broken"].status == "unreadable" and "signature" in (listed["broken"].error or "")
    assert all(listed[i].status == "finished" for i in ("train-a", "train-b", auto.id))


def test_cli_start_show_cancel(lab: Lab) -> None:
    cli = [sys.executable, "-m", "reuse_console.tui.cli"]
    env = {**os.environ, "REUSE_LAB": str(lab.root)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli, *args], capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL
        )

    started = run("jobs", "start", "--name", "cli", "--json", "--", "jobs", "sleep", "60", "--tick", "0.2")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["command"].endswith("jobs sleep 60 --tick 0.2")
    _wait_for_event(get_job(lab, "cli"), StepEnd)
    shown = json.loads(run("jobs", "show", "cli", "--json", "-n", "1").stdout)
    assert shown["status"] == "running" and len(shown["events"]) == 1 and shown["event_count"] >= 2
    refused = run("jobs", "cancel", "cli")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert run("jobs", "cancel", "cli", "--yes").returncode == 0
    listed = json.loads(run("jobs", "ls", "--json").stdout)
    assert [(j["id"], j["status"]) for j in listed] == [("cli", "cancelled")]
    unknown = run("jobs", "start", "--", "frobnicate")
    assert unknown.returncode == 2 and "unknown command 'frobnicate'" in unknown.stderr
