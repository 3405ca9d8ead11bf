"""`grid --executor slurm` on a real one-node SLURM cluster (tests/cluster/slurm.sh): the 4-cell grid
as a job array gives the local executor's results bit for bit; a task killed (`scancel
--signal=KILL`) and one requeued (`scontrol requeue`, as preemption does) resume from their last
epoch and still match; resubmitting a finished grid submits nothing. The kill and the requeue land
on a task frozen mid-cell (stopped, then suspended), so a fast cell cannot finish before them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import assert_same_results, make_lab, tiny_study

from reuse_console.engine.core.events import Message
from reuse_console.engine.grids.cells import run_id
from reuse_console.engine.grids.cluster_status import grid_cells, status_path
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.jobs.executors import executor_settings
from reuse_console.engine.jobs.runners import make_runner
from reuse_console.store.checkpoints import read_meta

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
SLICE_S = 0.25  # how long a cell runs between two stops while the kill test looks for it mid-run


def _slurm_grid(lab, study, **kw):
    settings = executor_settings(kind="slurm", poll_s=1.0, threads=1, array_parallelism=2, lease_s=60)
    runner = make_runner(settings, lab, study.name, device="cpu")
    return run_grid(lab, study, device="cpu", naming=settings.naming, runner=runner, **kw)


def test_slurm_grid_matches_local_and_a_resubmitted_grid_runs_nothing(slurm, tmp_path, local_result) -> None:
    lab = make_lab(tmp_path / "lab")
    study = tiny_study(2)
    exp = _slurm_grid(lab, study)
    ref_lab, ref = local_result(2)
    assert_same_results(lab, exp, ref_lab, ref)
    assert exp.naming == "content" and all(c.checkpoint.startswith("cell-") for c in exp.cells)
    executor, cells = grid_cells(lab, "g")
    assert executor == "slurm" and {c.state for c in cells} == {"done"} and all(c.job for c in cells)
    folder = lab.root / "jobs" / "slurm" / "g"
    assert folder.stat().st_mode & 0o777 == 0o700

    before = {p.name: p.stat().st_mtime_ns for p in lab.folder("checkpoints").iterdir()}
    jobs_before = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout
    events: list = []
    again = _slurm_grid(lab, study, resume=True, report=events.append)
    texts = [e.text for e in events if isinstance(e, Message)]
    assert not [t for t in texts if t.startswith("submitted")] and sum(t.endswith("kept") for t in texts) == 4
    assert (
        subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout == jobs_before
    )
    assert {p.name: p.stat().st_mtime_ns for p in lab.folder("checkpoints").iterdir()} == before
    assert_same_results(lab, again, ref_lab, ref)


def _epoch(lab, run: str) -> int:
    try:
        return read_meta(lab.path("checkpoints", f"{run}.last")).epoch
    except Exception:
        return 0


def _job_of(lab, cell: str) -> str:
    try:
        data = json.loads(status_path(lab, "g").read_text())
    except (OSError, ValueError):
        return ""
    row = next((c for c in data["cells"] if c["cell"] == cell), None)
    return row["job"] if row else ""


def _cell_process(run: str) -> int | None:
    """The pid of the `grid-cell` process training `run` (its spec, in the argv, names it)."""
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        if "grid-cell" in argv and any(run in a for a in argv):
            return proc.pid
    return None


def _frozen(pid: int) -> bool:
    """Is the process stopped (state T), so that it writes nothing more?"""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return True
        except (OSError, IndexError):
            return False  # gone
        time.sleep(0.01)
    return False


def _catch_mid_run(lab, job: str, run: str, epochs: int) -> int | None:
    """Stop the task's cell process (SIGSTOP) and read its epoch: after epoch 1 and before its last,
    suspend the task in SLURM too and return that epoch (the task stays frozen: a kill or requeue of
    a suspended task is a SIGKILL, no SIGTERM that would let it run on); otherwise let it go on
    (SIGCONT) and return None."""
    pid = _cell_process(run)
    if pid is None:
        return None  # not started (or gone)
    os.kill(pid, signal.SIGSTOP)
    if not _frozen(pid):
        return None
    epoch = _epoch(lab, run)
    assert epoch < epochs, f"{run} went through its epochs between two looks: make the cells longer"
    if epoch < 1:
        os.kill(pid, signal.SIGCONT)
        return None
    subprocess.run(["scontrol", "suspend", job], check=True, timeout=60)
    return epoch


@pytest.mark.race  # `make test-cluster-chaos`: see the Makefile
def test_killed_and_requeued_tasks_resume_and_still_match_local(slurm, tmp_path, local_result) -> None:
    """The first two cells run in slices of SLICE_S (stopped in between) from their process's start
    until one is caught stopped after epoch 1 and before its last (a slice is far shorter than its
    epochs); its task is then suspended and killed (`scancel --signal=KILL`) or requeued
    (`scontrol requeue`) while frozen, so it cannot finish first, whatever the load."""
    epochs = 12
    lab = make_lab(tmp_path / "lab")
    study = tiny_study(epochs)
    cells = study.cells()
    runs = [run_id(study, "g", c, "content") for c in cells]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(exp=_slurm_grid(lab, study)), daemon=True)
    worker.start()
    hit: dict[int, str] = {}
    caught: dict[int, int] = {}
    actions = {0: ["scancel", "--signal=KILL"], 1: ["scontrol", "requeue"]}
    deadline = time.time() + 400
    while len(hit) < 2 and time.time() < deadline and worker.is_alive():
        for k, cmd in actions.items():
            job = _job_of(lab, cells[k].name)
            if k in hit or not job:
                continue
            epoch = _catch_mid_run(lab, job, runs[k], epochs)
            if epoch is not None:
                subprocess.run([*cmd, job], check=True, timeout=60)
                hit[k], caught[k] = job, epoch
                if k == 1:  # SLURM holds a task requeued while suspended: release it, as an admin would
                    subprocess.run(["scontrol", "release", job], check=False, timeout=60)
        time.sleep(SLICE_S)
    worker.join(600)
    assert len(hit) == 2, f"no cell was caught mid-way: {hit}"
    assert "exp" in result, "the grid did not finish"
    ref_lab, ref = local_result(epochs)
    assert_same_results(lab, result["exp"], ref_lab, ref)
    folder = lab.root / "jobs" / "slurm" / "g"
    _, rows = grid_cells(lab, "g")
    logs = {k: "".join(p.read_text() for p in folder.glob(f"{hit[k]}_*log.err")) for k in hit}
    assert f"resuming {runs[1]} after epoch {caught[1]}" in logs[1]  # the requeued task resumed in its own job
    # the killed task's cell was submitted again (another job id) and resumed from its last epoch
    again = "".join(p.read_text() for p in folder.glob(f"{rows[0].job}_*log.err"))
    assert rows[0].tries == 2 and rows[0].job != hit[0]
    assert f"resuming {runs[0]} after epoch {caught[0]}" in again
