"""Where each cell of a grid stands, from the lab and, for cluster grids, from the scheduler.

A grid running on SLURM or Ray keeps `<lab>/jobs/cluster/<experiment>.json` (rewritten
atomically by the grid process at every poll): per cell the scheduler's view (queued, running
on a node, requeued, failed) and its job or task id. `grid_cells` joins that with what the lab
itself says (a cell whose run reached its last epoch is done whatever the scheduler last said),
so `grid --status` and the console show one list, live, and a local grid's cells simply have no
scheduler part.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reuse_console.engine.grids.cells import DONE, NEW, PARTIAL, STALE, cell_state
from reuse_console.engine.grids.experiment import load_experiment
from reuse_console.engine.training.spec import LAST_SUFFIX
from reuse_console.store.lab import Lab

QUEUED, RUNNING, REQUEUED, FAILED = "queued", "running", "requeued", "failed"
# what the lab says of a cell no scheduler reports on: not started, resumable, killed in its first epoch
LAB_STATES = {NEW: "new", PARTIAL: "partial", STALE: "new", DONE: "done"}


@dataclass
class ClusterCell:
    """One cell as `grid --status` shows it (engine/grids/status.py's console rows stay lab-only;
    this adds the scheduler's states, `requeued`, the node and the job id)."""

    cell: str  # the cell's name in the study (random-n4-s0)
    run: str  # its run id in the lab (`<experiment>.<cell>` or `cell-<hash>`)
    state: str  # new | partial | queued | running | requeued | failed | done
    node: str = ""  # where it runs (SLURM node, Ray node)
    job: str = ""  # the scheduler's id (SLURM job id, Ray task id)
    tries: int = 0  # submissions so far (1 = first)
    note: str = ""  # e.g. the scheduler's reason or the last error

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_path(lab: Lab, experiment: str) -> Path:
    return lab.root / "jobs" / "cluster" / f"{experiment}.json"


def write_cluster_status(lab: Lab, experiment: str, executor: str, cells: list[ClusterCell]) -> None:
    """Replace the scheduler's view of the grid's cells (atomic: readers never see half a file)."""
    path = status_path(lab, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"executor": executor, "updated": time.time(), "cells": [c.to_dict() for c in cells]}
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def read_cluster_status(lab: Lab, experiment: str) -> tuple[str, dict[str, ClusterCell]]:
    """The executor and per-cell scheduler view ("", {} for a local grid or an unreadable file)."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        data = json.loads(status_path(lab, experiment).read_text(encoding="utf-8"))
        return str(data["executor"]), {c["cell"]: ClusterCell(**c) for c in data["cells"]}
    return "", {}


def cancel_path(lab: Lab, experiment: str) -> Path:
    return lab.root / "jobs" / "cluster" / f"{experiment}.cancel"


def request_cancel(lab: Lab, experiment: str) -> None:
    """Ask the grid process following a cluster grid to cancel its tasks and stop (it checks at
    every poll, from any host sharing the lab, and never resubmits a cell once asked)."""
    path = cancel_path(lab, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    tmp.write_text(json.dumps({"requested": time.time(), "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, path)


def cancel_requested(lab: Lab, experiment: str) -> bool:
    return cancel_path(lab, experiment).exists()


def clear_cancel(lab: Lab, experiment: str) -> None:
    """A grid (re)started after a cancel: `--resume` goes on."""
    cancel_path(lab, experiment).unlink(missing_ok=True)


def run_of(checkpoint: str) -> str:
    """A cell's run id from the checkpoint its experiment evaluates (`R.last` or `R`)."""
    return checkpoint.removesuffix(LAST_SUFFIX)


def grid_cells(lab: Lab, experiment: str) -> tuple[str, list[ClusterCell]]:
    """Every cell of experiment `experiment` with its state: the lab's, else the scheduler's."""
    exp = load_experiment(lab, experiment)
    epochs = int(exp.study.get("train", {}).get("epochs", 1) or 1)
    executor, scheduled = read_cluster_status(lab, exp.name)
    out: list[ClusterCell] = []
    for record in exp.cells:
        run = run_of(record.checkpoint)
        lab_state = LAB_STATES[cell_state(lab, run, epochs)]
        seen = scheduled.get(record.name)
        if seen is None or lab_state == "done":
            out.append(ClusterCell(record.name, run, lab_state, *((seen.node, seen.job, seen.tries) if seen else ())))
        else:
            out.append(seen)
    return executor or "local", out
