"""Where each cell of a grid stands, read from the lab alone (no events, no process of its own).

A grid's cells are ordinary runs (`<experiment>.<cell>`, or `cell-<hash>` on a cluster:
engine/grids/naming.py), so their files say how far each got: a finished last checkpoint means
done, a run file whose writer is alive means running. The Jobs screen shows this per cell beside
the grid job's progress. A grid run on SLURM or Ray adds the scheduler's view
(engine/grids/cluster_status.py: queued, running on a node, requeued, failed), which the lab
overrides only where it knows better (done, a live run).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rows and counts stay torch-free for the console; reading them loads the engine
    from reuse_console.engine.grids.study import Study
    from reuse_console.store.lab import Lab

QUEUED, RUNNING, FINISHED, FAILED, STOPPED = "queued", "running", "done", "failed", "stopped"
REQUEUED = "requeued"  # a cluster cell preempted, timed out or retried: it resumes from its last epoch
CELL_STATES = (QUEUED, RUNNING, REQUEUED, FINISHED, FAILED, STOPPED)
SCHEDULER_STATES = (QUEUED, RUNNING, REQUEUED, FAILED)  # what a cluster status file may say of a cell


@dataclass(frozen=True)
class CellStatus:
    """One cell now: its run id, state, epochs finished of how many, and its latest validation Dice."""

    name: str
    run: str
    state: str  # one of CELL_STATES
    epoch: int = 0
    epochs: int = 0
    dice_fg: float | None = None  # mean foreground Dice of its latest finished epoch (seg cells)
    node: str = ""  # where a cluster cell runs or last ran (SLURM node, Ray node)


def cell_status(lab: Lab, run: str, name: str, epochs: int, *, grid_running: bool) -> CellStatus:
    """The state of one cell's run. A run cut short (killed, or its grid cancelled) is `queued`
    while the grid still runs (it will be resumed) and `stopped` once the grid has ended."""
    from reuse_console.engine.grids.cells import DONE, cell_state
    from reuse_console.store.runs import read_run

    path = lab.path("runs", run)
    if not path.exists():
        state = FINISHED if cell_state(lab, run, epochs) == DONE else QUEUED
        return CellStatus(name, run, state, epochs if state == FINISHED else 0, epochs)
    try:
        history = read_run(path)
    except Exception:  # a run file being replaced or damaged: judged by its checkpoints alone
        state = FINISHED if cell_state(lab, run, epochs) == DONE else (QUEUED if grid_running else STOPPED)
        return CellStatus(name, run, state, 0, epochs)
    done = history.n_epochs
    scores = history.epochs.get("val_dice_fg")
    dice = float(scores[-1]) if scores is not None and len(scores) else None
    dice = dice if dice is not None and math.isfinite(dice) else None
    if history.status == "running":
        state = RUNNING
    elif history.status == "failed":
        state = FAILED
    elif cell_state(lab, run, epochs) == DONE:
        state = FINISHED
    else:  # lost or cancelled mid-way
        state = QUEUED if grid_running else STOPPED
    return CellStatus(name, run, state, done, epochs, dice)


def grid_naming(lab: Lab, experiment: str) -> str:
    """How the grid's runs are named: the experiment file's `naming` attribute; before that file
    exists, content names when a cluster executor has written its status, else experiment names."""
    from reuse_console.engine.grids.cluster_status import read_cluster_status
    from reuse_console.engine.grids.naming import CONTENT, EXPERIMENT, NAMINGS
    from reuse_console.store.errors import UserError
    from reuse_console.store.h5 import attr_str, open_h5

    path = lab.path("experiments", experiment)
    try:
        with open_h5(path) as f:
            naming = attr_str(f, "naming") or EXPERIMENT  # written before cluster grids: experiment names
        return naming if naming in NAMINGS else EXPERIMENT
    except (OSError, UserError):  # not written yet (or being replaced)
        executor, _ = read_cluster_status(lab, experiment)
        return CONTENT if executor and executor != "local" else EXPERIMENT


def with_scheduler(cell: CellStatus, state: str, node: str) -> CellStatus:
    """The lab's view of a cell joined with the scheduler's: done and a live run are the lab's to
    say; otherwise the scheduler knows better (queued in SLURM, requeued after preemption)."""
    if cell.state in (FINISHED, RUNNING) or state not in SCHEDULER_STATES:
        return dataclasses.replace(cell, node=node)
    return dataclasses.replace(cell, state=state, node=node)


def grid_status(lab: Lab, study: Study, experiment: str, *, grid_running: bool) -> list[CellStatus]:
    """Every cell of `study` run as `experiment`, in the grid's order, under the grid's naming and
    with the scheduler's states of a cluster grid."""
    from reuse_console.engine.grids.cells import run_id
    from reuse_console.engine.grids.cluster_status import read_cluster_status

    epochs = study.train.epochs
    naming = grid_naming(lab, experiment)
    _, scheduled = read_cluster_status(lab, experiment)
    out = []
    for c in study.cells():
        cell = cell_status(lab, run_id(study, experiment, c, naming), c.name, epochs, grid_running=grid_running)
        seen = scheduled.get(c.name)
        out.append(cell if seen is None else with_scheduler(cell, seen.state, seen.node))
    return out


def counts(cells: list[CellStatus]) -> dict[str, int]:
    """How many cells are in each state (every state listed, zeros included)."""
    out = dict.fromkeys(CELL_STATES, 0)
    for c in cells:
        out[c.state] = out.get(c.state, 0) + 1
    return out
