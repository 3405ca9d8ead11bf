"""Where each cell of a grid stands, read from the lab alone (no events, no process of its own).

A grid's cells are ordinary runs (`<experiment>.<cell>`), so their files say how far each got:
a finished last checkpoint means done, a run file whose writer is alive means running. The
Jobs screen shows this per cell beside the grid job's progress; a cluster executor (issue 17)
can add its own states (pending in the queue, preempted) by mapping its job ids onto the same
`CellStatus` rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rows and counts stay torch-free for the console; reading them loads the engine
    from reuse_console.engine.grids.study import Study
    from reuse_console.store.lab import Lab

QUEUED, RUNNING, FINISHED, FAILED, STOPPED = "queued", "running", "done", "failed", "stopped"
CELL_STATES = (QUEUED, RUNNING, FINISHED, FAILED, STOPPED)


@dataclass(frozen=True)
class CellStatus:
    """One cell now: its run id, state, epochs finished of how many, and its latest validation Dice."""

    name: str
    run: str
    state: str  # one of CELL_STATES
    epoch: int = 0
    epochs: int = 0
    dice_fg: float | None = None  # mean foreground Dice of its latest finished epoch (seg cells)


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


def grid_status(lab: Lab, study: Study, experiment: str, *, grid_running: bool) -> list[CellStatus]:
    """Every cell of `study` run as `experiment`, in the grid's order."""
    from reuse_console.engine.grids.cells import cell_id

    epochs = study.train.epochs
    return [cell_status(lab, cell_id(experiment, c), c.name, epochs, grid_running=grid_running) for c in study.cells()]


def counts(cells: list[CellStatus]) -> dict[str, int]:
    """How many cells are in each state (every state listed, zeros included)."""
    out = dict.fromkeys(CELL_STATES, 0)
    for c in cells:
        out[c.state] = out.get(c.state, 0) + 1
    return out
