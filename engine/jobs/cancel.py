"""Cancel a job: `jobs cancel`, the console's `x`. A grid running on SLURM or Ray also has its
scheduler's jobs cancelled (engine/jobs/cluster_cancel.py) before its own process is stopped."""

from __future__ import annotations

from reuse_console.engine.jobs.cluster_cancel import cancel_job_cells
from reuse_console.engine.jobs.control import Job, get_job, request_stop, stop_job
from reuse_console.store.lab import Lab


def cancel_job(lab: Lab, ref: str, grace_s: float = 5.0) -> Job:
    """Stop a running job: SIGTERM to its process group, SIGKILL after `grace_s` seconds; a grid
    on SLURM or Ray also has its cluster jobs cancelled. A job that is not running is returned as is."""
    job = get_job(lab, ref)
    if not job.active:
        return job
    request_stop(lab, job)
    cancel_job_cells(lab, job)
    return stop_job(lab, job, grace_s)
