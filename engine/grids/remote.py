"""One grid cell as a cluster task: the `reuse-console grid-cell` command line and what it runs.

A cluster task (a SLURM array task, a Ray task) runs nothing but a `reuse-console grid-cell`
command line built here from the cell's TrainSpec (as JSON in the argv, so nothing is read back
from the lab to decide what to run, and nothing is unpickled). The task re-derives the cell's
content name from the spec and refuses a spec whose name does not match, takes the cell's lease
(engine/grids/leases.py) and brings the run to its last epoch: kept when done, resumed from its
last epoch when a predecessor was killed, preempted or requeued, trained otherwise, by the same
`train_spec` as the grid process (engine/grids/cells.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from reuse_console.engine.grids.leases import DEFAULT_LEASE_S, holding_lease, lease_path
from reuse_console.engine.grids.naming import content_name
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

COMMAND = "grid-cell"


def task_argv(
    lab_root: str,
    spec: TrainSpec,
    *,
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    python: str | None = None,
) -> list[str]:
    """The command line a task runs: this interpreter's reuse-console (the venv must be at the same
    path on every node), on the shared lab, for one cell's spec."""
    argv = [python or sys.executable, "-m", "reuse_console.tui.cli", COMMAND]
    argv += ["--spec", json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))]
    argv += ["--lab", lab_root, "--device", device, "--precision", precision, "--lease", str(lease_s)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    return argv


def parse_spec(text: str) -> TrainSpec:
    """A cell spec from `grid-cell --spec`: JSON of a TrainSpec whose name is its content name."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise UserError(f"grid-cell --spec is not JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("data"), str):
        raise UserError("grid-cell --spec must be a JSON object of a training spec with a `data` id")
    try:
        spec = TrainSpec.from_dict(data)
    except TypeError as exc:
        raise UserError(f"grid-cell --spec: {exc}") from exc
    spec.check()
    if spec.name != content_name(spec):
        raise UserError(f"grid-cell --spec names run {spec.name!r}, but its content names it {content_name(spec)!r}")
    return spec


@contextmanager
def cell_lease(lab: Lab, spec: TrainSpec, lease_s: float = DEFAULT_LEASE_S) -> Iterator[None]:
    """Hold the cell's lease for the block (a cluster task training it: `train_spec`). A task
    requeued on another node waits up to one lease for its predecessor's to expire."""
    name = spec.name or ""
    path = lease_path(lab.folder("runs", create=True), name)
    with holding_lease(path, f"cell {name}", lease_s=lease_s, wait_s=lease_s * 1.25, poll_s=min(2.0, lease_s / 4)):
        yield
