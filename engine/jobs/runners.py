"""The cell runner of `grid --executor slurm|ray`: its module (and submitit or Ray with it) is
imported only when that executor is asked for."""

from __future__ import annotations

from reuse_console.engine.grids.grid import CellRunner
from reuse_console.engine.jobs.executors import ExecutorSettings
from reuse_console.store.lab import Lab


def make_runner(
    settings: ExecutorSettings,
    lab: Lab,
    experiment: str,
    *,
    device: str = "auto",
    precision: str = "fp32",
) -> CellRunner | None:
    """The cell runner of a cluster executor (None: train here, as `grid` always did)."""
    if settings.kind == "slurm":
        from reuse_console.engine.jobs.executors_slurm import SlurmRunner

        return SlurmRunner(settings, lab, experiment, device=device, precision=precision)
    if settings.kind == "ray":
        from reuse_console.engine.jobs.executors_ray import RayRunner

        return RayRunner(settings, lab, experiment, device=device, precision=precision)
    return None
