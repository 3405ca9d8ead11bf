"""`grid --executor ray` on a real local Ray cluster (`ray start --head` on 127.0.0.1 with this test's
own ports): the 4-cell grid gives the local executor's results bit for bit; a Ray worker killed
mid-cell is retried by Ray and the retry resumes the cell from its last epoch; resubmitting a
finished grid submits nothing."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
from conftest import assert_same_results, make_lab, tiny_study

from reuse_console.engine.core.events import Message
from reuse_console.engine.grids.cells import run_id
from reuse_console.engine.grids.cluster_status import grid_cells
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.jobs.executors import executor_settings
from reuse_console.engine.jobs.runners import make_runner
from reuse_console.store.checkpoints import read_meta

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _ray_grid(lab, study, address, **kw):
    settings = executor_settings(kind="ray", ray_address=address, poll_s=0.5, threads=1, lease_s=60)
    runner = make_runner(settings, lab, study.name, device="cpu")
    return run_grid(lab, study, device="cpu", naming=settings.naming, runner=runner, **kw)


def test_ray_grid_matches_local_and_a_resubmitted_grid_runs_nothing(ray_head, tmp_path, local_result) -> None:
    lab = make_lab(tmp_path / "lab")
    study = tiny_study(2)
    exp = _ray_grid(lab, study, ray_head)
    ref_lab, ref = local_result(2)
    assert_same_results(lab, exp, ref_lab, ref)
    executor, cells = grid_cells(lab, "g")
    assert executor == "ray" and {c.state for c in cells} == {"done"}
    before = {p.name: p.stat().st_mtime_ns for p in lab.folder("checkpoints").iterdir()}
    events: list = []
    again = _ray_grid(lab, study, ray_head, resume=True, report=events.append)
    texts = [e.text for e in events if isinstance(e, Message)]
    assert not [t for t in texts if t.startswith("submitted")] and sum(t.endswith("kept") for t in texts) == 4
    assert {p.name: p.stat().st_mtime_ns for p in lab.folder("checkpoints").iterdir()} == before
    assert_same_results(lab, again, ref_lab, ref)


def _epoch(lab, run: str) -> int:
    try:
        return read_meta(lab.path("checkpoints", f"{run}.last")).epoch
    except Exception:
        return 0


def _cell_process(run: str) -> psutil.Process | None:
    for p in psutil.process_iter():
        try:
            if "grid-cell" in p.cmdline() and any(run in a for a in p.cmdline()):
                return p
        except psutil.Error:
            continue
    return None


def test_a_killed_ray_worker_is_retried_and_resumes_its_cell(ray_head, tmp_path, local_result) -> None:
    epochs = 8
    lab = make_lab(tmp_path / "lab")
    study = tiny_study(epochs)
    runs = [run_id(study, "g", c, "content") for c in study.cells()]
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(exp=_ray_grid(lab, study, ray_head)), daemon=True)
    worker.start()
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and worker.is_alive():
        for run in runs:
            cell = _cell_process(run)
            if cell is not None and 1 <= _epoch(lab, run) < epochs - 2:
                ray_worker = cell.parent()  # the Ray worker process running the task
                assert ray_worker is not None and ray_worker.pid != os.getpid()
                first_pid = cell.pid
                os.kill(ray_worker.pid, signal.SIGKILL)
                killed = (run, first_pid)
                break
        time.sleep(0.1)
    worker.join(600)
    assert killed is not None, "no cell was caught mid-way"
    assert "exp" in result, "the grid did not finish"
    ref_lab, ref = local_result(epochs)
    assert_same_results(lab, result["exp"], ref_lab, ref)
    assert not psutil.pid_exists(killed[1]) or psutil.Process(killed[1]).status() == psutil.STATUS_ZOMBIE
