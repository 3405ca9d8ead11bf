"""`grid --executor slurm` on a real one-node SLURM cluster (tests/cluster/slurm.sh): the 4-cell grid
as a job array gives the local executor's results bit for bit; a task killed (`scancel
--signal=KILL`) and one requeued (`scontrol requeue`, as preemption does) resume from their last
epoch and still match; resubmitting a finished grid submits nothing."""

from __future__ import annotations

import json
import subprocess
import threading
import time

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


def _job_of(lab, cell: str) -> tuple[str, str]:
    try:
        data = json.loads(status_path(lab, "g").read_text())
    except (OSError, ValueError):
        return "", ""
    row = next((c for c in data["cells"] if c["cell"] == cell), None)
    return (row["job"], row["state"]) if row else ("", "")


@pytest.mark.race  # see the Makefile's test-cluster-chaos: a kill can land after the cell's last epoch
def test_killed_and_requeued_tasks_resume_and_still_match_local(slurm, tmp_path, local_result) -> None:
    epochs = 8
    lab = make_lab(tmp_path / "lab")
    study = tiny_study(epochs)
    cells = study.cells()
    runs = [run_id(study, "g", c, "content") for c in cells]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(exp=_slurm_grid(lab, study)), daemon=True)
    worker.start()
    hit: dict[int, str] = {}
    actions = {0: ["scancel", "--signal=KILL"], 1: ["scontrol", "requeue"]}
    deadline = time.time() + 400
    while len(hit) < 2 and time.time() < deadline and worker.is_alive():
        for k, cmd in actions.items():
            if k in hit:
                continue
            job, state = _job_of(lab, cells[k].name)
            if state == "running" and 1 <= _epoch(lab, runs[k]) < epochs - 2:
                subprocess.run([*cmd, job], check=True, timeout=60)
                hit[k] = job
        time.sleep(0.1)
    worker.join(600)
    assert len(hit) == 2, f"no cell was caught mid-way: {hit}"
    assert "exp" in result, "the grid did not finish"
    ref_lab, ref = local_result(epochs)
    assert_same_results(lab, result["exp"], ref_lab, ref)
    folder = lab.root / "jobs" / "slurm" / "g"
    _, rows = grid_cells(lab, "g")
    logs = {k: "".join(p.read_text() for p in folder.glob(f"{hit[k]}_*log.err")) for k in hit}
    assert f"resuming {runs[1]} after epoch" in logs[1]  # the requeued one resumed in its own job
    # the killed task ran its cell again from its last epoch: resubmitted by the grid (a second
    # try, another job id) or, when SLURM requeued the killed job itself, under the same id
    again = "".join(p.read_text() for p in folder.glob(f"{rows[0].job}_*log.err"))
    assert rows[0].tries in (1, 2) and f"resuming {runs[0]} after epoch" in again
