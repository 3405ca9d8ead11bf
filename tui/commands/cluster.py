"""Grids on a cluster: `grid --executor slurm|ray`, `grid --status`, and the hidden `grid-cell` a task runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..options import DeviceOpt, LabOpt, PrecisionOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout

if TYPE_CHECKING:
    from reuse_console.engine.grids.grid import CellRunner

STATE_STYLE = {"done": "green", "running": "cyan", "queued": "blue", "requeued": "yellow", "failed": "red"}

ExecutorOpt = Annotated[
    Optional[str],
    typer.Option(
        "--executor",
        help="Where the cells run: local (here, the default), slurm (one job array through submitit) or ray "
        "(Ray tasks); the study's [executor] table sets the rest (docs/cluster.md). Cluster cells are named by "
        "their content, so a resubmitted grid trains nothing twice.",
        show_default=False,
    ),
]
RayAddressOpt = Annotated[
    Optional[str],
    typer.Option("--ray-address", help="Ray cluster to connect to (default: a local Ray started for this grid)."),
]
PartitionOpt = Annotated[Optional[str], typer.Option("--partition", help="SLURM partition (default: the cluster's).")]


def cluster_runner(
    study_path: Path,
    executor: Optional[str],
    ray_address: Optional[str],
    partition: Optional[str],
    lab: Any,
    experiment: str,
    device: str,
    precision: str,
) -> tuple[CellRunner | None, str | None]:
    """The cell runner and naming of `grid --executor` (None, None: train here as always)."""
    from reuse_console.engine.jobs.executors import executor_settings, study_executor_table
    from reuse_console.engine.jobs.runners import make_runner

    settings = executor_settings(
        study_executor_table(study_path), kind=executor, ray_address=ray_address, partition=partition
    )
    if settings.kind == "local":
        return None, None
    runner = make_runner(settings, lab, experiment, device=device, precision=precision)
    return runner, settings.naming


def show_grid_status(lab: Any, experiment: str, json_out: bool) -> None:
    """`grid --status`: every cell's state from the scheduler and the lab."""
    from reuse_console.engine.grids.cluster_status import grid_cells

    executor, cells = grid_cells(lab, experiment)
    if json_out:
        emit_json({"experiment": experiment, "executor": executor, "cells": [c.to_dict() for c in cells]})
        return
    table = Table(title=f"grid {experiment} ({executor})", title_justify="left", box=None, pad_edge=False)
    for col in ("cell", "state", "node", "job", "tries", "run"):
        table.add_column(col, no_wrap=col in ("cell", "run"))
    for c in cells:
        style = STATE_STYLE.get(c.state, "")
        state = f"[{style}]{c.state}[/]" if style else c.state
        table.add_row(escape(c.cell), state, escape(c.node), escape(c.job), str(c.tries or ""), escape(c.run))
    stdout.print(table)
    counts: dict[str, int] = {}
    for c in cells:
        counts[c.state] = counts.get(c.state, 0) + 1
    stderr.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for c in cells:
        if c.state == "failed" and c.note:
            stderr.print(f"{escape(c.cell)}: {escape(c.note)}", highlight=False)


def cancel_cluster_grid(lab: Any, experiment: str, json_out: bool) -> None:
    """`grid --cancel`: cancel a SLURM or Ray grid's tasks (engine/jobs/cluster_cancel.py)."""
    from reuse_console.engine.jobs.cluster_cancel import cancel_grid

    done = cancel_grid(lab, experiment)
    if json_out:
        emit_json({"experiment": experiment, "executor": done.executor, "scancelled": done.scancelled})
        return
    if done.scancelled:
        stderr.print(f"scancel {' '.join(done.scancelled)}", highlight=False)
    if done.note:
        stderr.print(escape(done.note), highlight=False)
    stderr.print(f"grid {escape(experiment)} ({done.executor}) cancelled; finished cells are kept: --resume continues")


def grid_cell(
    spec: Annotated[str, typer.Option("--spec", help="The cell's training spec as JSON (built by the grid).")],
    lease: Annotated[float, typer.Option("--lease", help="Seconds a cell's lease lasts unless renewed.")] = 120.0,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    threads: ThreadsOpt = None,
    lab: LabOpt = None,
) -> None:
    """One grid cell, as a cluster task runs it: train, resume or keep the content-named run SPEC names."""
    import signal

    from reuse_console.engine.core.device import use_threads
    from reuse_console.engine.core.events import EpochEnd, Event, Message
    from reuse_console.engine.grids.cells import train_spec
    from reuse_console.engine.grids.remote import cell_lease, parse_spec
    from reuse_console.store.lab import Lab

    def log(event: Event) -> None:  # the task's log (submitit's folder, Ray's worker logs): plain lines
        if isinstance(event, Message):
            stderr.print(escape(event.text), highlight=False)
        elif isinstance(event, EpochEnd):
            stderr.print(f"epoch {event.epoch}", highlight=False)

    use_threads(threads, device)
    cell = parse_spec(spec)
    signal.signal(signal.SIGUSR2, signal.default_int_handler)  # preemption notice: stop like Ctrl-C
    the_lab = Lab.from_option(lab)
    with sigterm_as_interrupt(), cell_lease(the_lab, cell, lease):
        how = train_spec(the_lab, cell, device=device, precision=precision, report=log)
    stderr.print(f"cell {cell.name}: {how}")


def register(app: typer.Typer) -> None:
    app.command("grid-cell", hidden=True)(grid_cell)
