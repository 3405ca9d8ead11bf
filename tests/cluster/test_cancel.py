"""Cancelling a cluster grid: the grid process is asked first (it never resubmits once asked), SLURM
jobs are scancelled, a local grid is refused with one line. scancel is a stand-in script that
records its arguments (the real one is exercised by tests/cluster/test_slurm.py's cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reuse_console.engine.grids.cluster_status import (
    ClusterCell,
    cancel_requested,
    read_cluster_status,
    request_cancel,
    write_cluster_status,
)
from reuse_console.engine.jobs.cluster_cancel import cancel_grid
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

STUDY = """
name = "g"
target = "toy"
seeds = 1
subjects = [1]
[[sources]]
name = "random"
[train]
epochs = 1
batch = 4
arch_config = { base_width = 4 }
"""


@pytest.fixture
def fake_scancel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, log = tmp_path / "bin", tmp_path / "scancel.log"
    bin_dir.mkdir()
    script = bin_dir / "scancel"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _slurm_grid(lab: Lab) -> None:
    write_cluster_status(
        lab,
        "g",
        "slurm",
        [
            ClusterCell("a", "cell-a", "done", job="5_0"),
            ClusterCell("b", "cell-b", "running", node="n1", job="5_1"),
            ClusterCell("c", "cell-c", "requeued", job="6"),
            ClusterCell("d", "cell-d", "queued", job="5_3"),
        ],
    )


def test_cancel_asks_the_grid_process_and_scancels_unfinished_cells(lab: Lab, fake_scancel: Path) -> None:
    _slurm_grid(lab)
    done = cancel_grid(lab, "g")
    assert done.executor == "slurm" and done.scancelled == ["5", "6"]
    assert fake_scancel.read_text().split() == ["5", "6"]
    assert cancel_requested(lab, "g")


def test_cli_grid_cancel(lab: Lab, tmp_path: Path, fake_scancel: Path) -> None:
    study = tmp_path / "g.toml"
    study.write_text(STUDY)
    cmd = [sys.executable, "-m", "reuse_console.tui.cli", "grid", str(study), "--cancel", "--lab", str(lab.root)]
    local = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert local.returncode == 2 and "has no cluster status" in local.stderr and "Traceback" not in local.stderr
    _slurm_grid(lab)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cancelled" in proc.stderr and fake_scancel.read_text().split() == ["5", "6"]


def test_the_slurm_grid_process_stops_without_resubmitting_once_asked(lab: Lab, fake_scancel: Path) -> None:
    from reuse_console.engine.jobs.executors import executor_settings
    from reuse_console.engine.jobs.executors_slurm import SlurmRunner

    runner = SlurmRunner.__new__(SlurmRunner)  # no sbatch here: only the follow loop is exercised
    runner.settings, runner.lab, runner.experiment = executor_settings(kind="slurm"), lab, "g"
    runner.folder = lab.root / "jobs" / "slurm" / "g"
    status = {0: ClusterCell("a", "cell-a", "running", job="7_0"), 1: ClusterCell("b", "cell-b", "queued", job="7_1")}
    request_cancel(lab, "g")
    messages = []
    with pytest.raises(UserError, match="cancelled; finished cells are kept"):
        runner._follow(
            None, {0: None, 1: None}, {}, status, lambda k: None, messages.append
        )  # executor None: no submit
    assert fake_scancel.read_text().split() == ["7"]
    _, cells = read_cluster_status(lab, "g")
    assert {c.cell: (c.state, c.note) for c in cells.values()} == {
        "a": ("failed", "cancelled"),
        "b": ("failed", "cancelled"),
    }


def test_cancelling_a_grid_job_cancels_its_cluster_jobs(lab: Lab, tmp_path: Path, fake_scancel: Path) -> None:
    from reuse_console.engine.jobs.cluster_cancel import cancel_job_cells
    from reuse_console.engine.jobs.control import Job

    (tmp_path / "g.toml").write_text(STUDY)
    _slurm_grid(lab)
    job = Job(
        id="grid-1",
        argv=["grid", "--executor", "slurm", "g.toml"],
        pid=0,
        started="",
        status="running",
        returncode=None,
        events_path=tmp_path / "e",
        log_path=tmp_path / "l",
        cwd=str(tmp_path),
    )
    cancel_job_cells(lab, job)
    assert fake_scancel.read_text().split() == ["5", "6"] and cancel_requested(lab, "g")
    with pytest.raises(UserError):
        cancel_grid(lab, "other")
