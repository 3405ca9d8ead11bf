"""Cancel a grid running on SLURM or Ray: `grid STUDY --cancel`, and the console's cancel of a grid job.

The grid process follows its cells and resubmits any that end unfinished, so cancelling the
scheduler's jobs alone would only start them again. Cancelling therefore first leaves a request in
the shared lab (`jobs/cluster/<experiment>.cancel`, engine/grids/cluster_status.py), which the
grid process checks at every poll from whatever host it runs on: it then cancels its tasks itself
(SLURM: scancel; Ray: `ray.cancel(force=True)`, only its driver can) and stops without
resubmitting. SLURM jobs are also scancelled here at once, so a grid whose process is gone (killed,
its login node rebooted) leaves nothing queued. Ray tasks die with their driver, so a Ray grid with
no grid process has nothing left to cancel. Finished cells are kept; `--resume` continues the rest.
Imports no cluster library: scancel is a command line.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from reuse_console.engine.grids.cluster_status import QUEUED, REQUEUED, RUNNING, read_cluster_status, request_cancel
from reuse_console.engine.jobs.control import Job
from reuse_console.engine.jobs.resume import grid_of
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

CLUSTER_EXECUTORS = ("slurm", "ray")


@dataclass
class GridCancel:
    """What a cancel did: the grid's executor, the scheduler jobs it cancelled here (SLURM)."""

    experiment: str
    executor: str
    scancelled: list[str] = field(default_factory=list)  # SLURM job ids given to scancel (array ids)
    note: str = ""


def scancel(job_ids: list[str]) -> list[str]:
    """scancel each job (array tasks by their array's id); the ids given, [] without scancel here."""
    bases = sorted({j.split("_")[0] for j in job_ids if j})
    if not bases or shutil.which("scancel") is None:
        return []
    subprocess.run(["scancel", *bases], check=False, timeout=60, capture_output=True)
    return bases


def is_cluster_grid(lab: Lab, experiment: str) -> bool:
    executor, _ = read_cluster_status(lab, experiment)
    return executor in CLUSTER_EXECUTORS


def cancel_grid(lab: Lab, experiment: str) -> GridCancel:
    """Ask the grid process to cancel and stop, and scancel its unfinished SLURM cells right away."""
    executor, cells = read_cluster_status(lab, experiment)
    if executor not in CLUSTER_EXECUTORS:
        raise UserError(
            f"grid {experiment!r} has no cluster status in {lab.root} (it runs here, or never ran on SLURM or Ray): "
            "cancel its job (`reuse-console jobs cancel ID`) or stop it with Ctrl-C"
        )
    request_cancel(lab, experiment)
    out = GridCancel(experiment, executor)
    active = [c.job for c in cells.values() if c.state in (QUEUED, RUNNING, REQUEUED)]
    if executor == "slurm":
        out.scancelled = scancel(active)
        if active and not out.scancelled:
            out.note = "scancel is not on PATH here: the grid process cancels its SLURM jobs at its next poll"
    else:
        out.note = "the grid process cancels its Ray tasks at its next poll (without it, they ended with it)"
    return out


def cancel_job_cells(lab: Lab, job: Job) -> None:
    """`jobs cancel` / the console's cancel of a grid job running on SLURM or Ray: its scheduler's
    jobs are cancelled too, before its process stops following them (other jobs: nothing)."""
    found = grid_of(job)
    if found is not None and is_cluster_grid(lab, found[1]):
        cancel_grid(lab, found[1])
