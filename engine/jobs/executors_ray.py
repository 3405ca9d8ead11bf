"""Grid cells as Ray tasks (`grid --executor ray`).

Each cell is one task with the `num_cpus`/`num_gpus` the settings ask for, running one cell's
`reuse-console grid-cell` command line (engine/grids/remote.py) on whichever node Ray picks, into
the shared lab. Ray retries a task whose worker died (system failures, `max_retries`); the grid
process resubmits one whose command failed (also up to `max_retries`); either way the retry resumes
the cell from its last epoch. Connects only to the address given (`--ray-address` / `ray_address`),
or starts a local Ray for this grid, stopped when it ends. Ray's own security model assumes a
trusted network: anyone who can reach the cluster's ports can run code on it (docs/cluster.md).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable
from typing import Any

from reuse_console.engine.core.events import Message, Reporter
from reuse_console.engine.grids.cells import DONE, cell_state
from reuse_console.engine.grids.cluster_status import (
    FAILED,
    QUEUED,
    REQUEUED,
    RUNNING,
    ClusterCell,
    cancel_requested,
    clear_cancel,
    write_cluster_status,
)
from reuse_console.engine.grids.leases import lease_path, read_lease
from reuse_console.engine.jobs.executors import ClusterRunner, ExecutorSettings, die_with_parent
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


def run_cell_command(argv: list[str]) -> int:
    """The body of every Ray task: run one cell's command line; a non-zero exit is a task error."""
    code = subprocess.run(argv, preexec_fn=die_with_parent, check=False).returncode
    if code != 0:
        raise RuntimeError(f"grid-cell exited with code {code}")
    return code


class RayRunner(ClusterRunner):
    """Run a grid's cells as Ray tasks and wait for them (a `CellRunner`)."""

    def __init__(
        self, settings: ExecutorSettings, lab: Lab, experiment: str, *, device: str = "auto", precision: str = "fp32"
    ) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'reuse-console[ray]'") from None
        super().__init__(settings, lab, experiment, device=device, precision=precision)

    def __call__(self, todo: list[tuple[int, str, TrainSpec]], done: Callable[[int], None], report: Reporter) -> None:
        if not todo:
            return
        import ray

        s = self.settings
        clear_cancel(self.lab, self.experiment)
        started_here = not ray.is_initialized()
        if started_here:
            try:
                if s.ray_address:
                    ray.init(address=s.ray_address, logging_level=logging.WARNING, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = s.ray_address or "a local Ray"
                raise UserError(f"--executor ray: cannot connect to {where}: {str(exc).splitlines()[0]}") from None
        try:
            remote = ray.remote(
                num_cpus=s.cpus_per_task, num_gpus=s.gpus_per_task, max_retries=s.max_retries, retry_exceptions=False
            )(run_cell_command)
            self._follow(ray, remote, todo, done, report)
        finally:
            if started_here:
                ray.shutdown()

    def _follow(
        self,
        ray: Any,
        remote: Any,
        todo: list[tuple[int, str, TrainSpec]],
        done: Callable[[int], None],
        report: Reporter,
    ) -> None:
        s = self.settings
        specs = {k: spec for k, _, spec in todo}
        status = {k: ClusterCell(cell, spec.name or "", QUEUED, tries=1) for k, cell, spec in todo}
        refs: dict[Any, int] = {}
        for k, _, spec in todo:
            ref = remote.remote(self.argv(spec))
            refs[ref] = k
            status[k].job = ref.task_id().hex()
        report(Message(f"submitted {len(refs)} cells as Ray tasks"))
        failed: list[str] = []
        runs = self.lab.folder("runs", create=True)
        while refs:
            if cancel_requested(self.lab, self.experiment):
                self._cancelled(ray, refs, status)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=s.poll_s)
            for ref in ready:
                k = refs.pop(ref)
                cell, spec = status[k], specs[k]
                error = ""
                try:
                    ray.get(ref)
                except Exception as exc:  # a task error, or its retries for worker deaths used up
                    error = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__
                if cell_state(self.lab, spec.name or "", spec.epochs) == DONE:
                    cell.state, cell.note = "done", ""
                    done(k)
                elif cell.tries > s.max_retries:
                    cell.state, cell.note = FAILED, error
                    failed.append(cell.cell)
                    report(Message(f"cell {cell.cell}: Ray task failed ({error}), no retries left"))
                elif cancel_requested(self.lab, self.experiment):
                    refs[ref] = k  # cancelled with the rest below
                    self._cancelled(ray, refs, status)
                else:
                    new = remote.remote(self.argv(spec))
                    refs[new] = k
                    cell.job, cell.tries, cell.state, cell.note = new.task_id().hex(), cell.tries + 1, REQUEUED, error
                    report(Message(f"cell {cell.cell}: Ray task failed ({error}); submitted again"))
            for k in refs.values():  # running: its lease names the node (no Ray state API needed)
                cell = status[k]
                info = read_lease(lease_path(runs, cell.run))
                if info:
                    cell.state, cell.node = RUNNING, str(info.get("host", ""))
            write_cluster_status(self.lab, self.experiment, "ray", list(status.values()))
        if failed:
            raise UserError(
                f"{len(failed)} cell(s) failed on Ray (first: {failed[0]}); finished cells are kept: rerun with --resume"
            )

    def _cancelled(self, ray: Any, refs: dict[Any, int], status: dict[int, ClusterCell]) -> None:
        """`grid --cancel` (or the console) asked: cancel the tasks left (force: their workers die,
        and with them each cell's command) and stop, resubmitting nothing."""
        for ref in refs:
            with contextlib.suppress(Exception):  # already finished or gone
                ray.cancel(ref, force=True)
        for k in refs.values():
            status[k].state, status[k].note = FAILED, "cancelled"
        write_cluster_status(self.lab, self.experiment, "ray", list(status.values()))
        raise UserError(f"grid {self.experiment!r} cancelled; finished cells are kept: rerun with --resume")
