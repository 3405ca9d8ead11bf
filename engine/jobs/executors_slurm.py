"""Grid cells as one SLURM job array, through submitit (`grid --executor slurm`).

Each array task runs one cell's `reuse-console grid-cell` command line (engine/grids/remote.py)
on its node, writing into the shared lab. submitit keeps its files (the pickled `CellCommand`,
which holds only that argv, and the task logs) in `<lab>/jobs/slurm/<experiment>/`, created
private (engine/jobs/executors.py: `check_private`). The grid process follows the tasks with
`squeue` (no accounting database needed) and the lab: a task that ended with its cell at its last
epoch is done; one that ended otherwise (killed, node lost, cancelled) is submitted again, up to
`max_retries`, and resumes from the cell's last epoch. Preemption and time limits: SLURM sends
SIGUSR2 (submitit's `--signal=USR2@90`); submitit requeues the task, the cell command stops on
SIGTERM/SIGUSR2, and the requeued task resumes from its last epoch.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import submitit

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
from reuse_console.engine.jobs.executors import (
    ClusterRunner,
    ExecutorSettings,
    check_existing,
    check_private,
    die_with_parent,
)
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}
ACTIVE |= {"SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


class CellCommand(submitit.helpers.Checkpointable):
    """What a task runs: one `reuse-console grid-cell` command line, nothing else. Checkpointable:
    on preemption or time-out submitit requeues it unchanged, and the cell resumes from the lab."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __call__(self) -> int:
        code = subprocess.run(self.argv, preexec_fn=die_with_parent, check=False).returncode
        if code != 0:
            raise RuntimeError(f"grid-cell exited with code {code}")
        return code


def squeue(job_ids: list[str]) -> dict[str, tuple[str, str, str]]:
    """State, node and reason of each job (array tasks one by one) SLURM still lists."""
    if not job_ids:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    cmd = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%N|%r", "-j", ",".join(bases)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        return {}
    out: dict[str, tuple[str, str, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            out[parts[0]] = (parts[1], parts[2], parts[3])
    return out


class SlurmRunner(ClusterRunner):
    """Run a grid's cells as a SLURM job array and wait for them (a `CellRunner`)."""

    def __init__(
        self, settings: ExecutorSettings, lab: Lab, experiment: str, *, device: str = "auto", precision: str = "fp32"
    ) -> None:
        super().__init__(settings, lab, experiment, device=device, precision=precision)
        folder = lab.root / "jobs" / "slurm" / experiment
        check_existing(folder, lab.root.resolve())  # refused before anything else (and before sbatch)
        if shutil.which("sbatch") is None:
            raise UserError("--executor slurm: sbatch is not on PATH here (run the grid on a SLURM login node)")
        self.folder = check_private(folder, lab)

    def parameters(self) -> dict[str, Any]:
        s = self.settings
        params: dict[str, Any] = {
            "job_name": f"rc-{self.experiment}",
            "time": s.time_min,
            "cpus_per_task": s.cpus_per_task,
            "array_parallelism": s.array_parallelism,
            "additional_parameters": dict(s.sbatch),
        }
        if s.partition:
            params["partition"] = s.partition
        if s.account:
            params["account"] = s.account
        if s.gpus_per_task:
            params["gpus_per_task"] = s.gpus_per_task
        if s.mem_gb:
            params["mem"] = f"{int(s.mem_gb * 1024)}MB"
        return params

    def __call__(self, todo: list[tuple[int, str, TrainSpec]], done: Callable[[int], None], report: Reporter) -> None:
        if not todo:
            return
        clear_cancel(self.lab, self.experiment)
        executor = submitit.SlurmExecutor(folder=self.folder, max_num_timeout=1000)
        executor.update_parameters(**self.parameters())
        specs = {k: spec for k, _, spec in todo}
        status = {k: ClusterCell(cell, spec.name or "", QUEUED, tries=1) for k, cell, spec in todo}
        jobs: dict[int, Any] = {}
        with executor.batch():
            for k, _, spec in todo:
                jobs[k] = executor.submit(CellCommand(self.argv(spec)))
        for k, job in jobs.items():
            status[k].job = str(job.job_id)
        report(Message(f"submitted {len(jobs)} cells as SLURM array {str(jobs[todo[0][0]].job_id).split('_')[0]}"))
        self._follow(executor, jobs, specs, status, done, report)

    def _follow(
        self,
        executor: Any,
        jobs: dict[int, Any],
        specs: dict[int, TrainSpec],
        status: dict[int, ClusterCell],
        done: Callable[[int], None],
        report: Reporter,
    ) -> None:
        s = self.settings
        pending = set(jobs)
        failed: list[str] = []
        seen_running: set[str] = set()
        while pending:
            if cancel_requested(self.lab, self.experiment):
                self._cancelled(list(status.values()), [status[k] for k in pending], report)
            states = squeue([status[k].job for k in pending])
            for k in sorted(pending):
                cell, job_id = status[k], status[k].job
                state, node, reason = states.get(job_id, ("", "", ""))
                if state in ACTIVE:
                    if state == "RUNNING":
                        seen_running.add(job_id)
                        cell.state, cell.node, cell.note = RUNNING, node, ""
                    else:
                        cell.state = REQUEUED if job_id in seen_running or "REQUEUE" in state else QUEUED
                        cell.note = reason
                    continue
                spec = specs[k]
                if cell_state(self.lab, spec.name or "", spec.epochs) == DONE:
                    pending.discard(k)
                    cell.state, cell.note = "done", ""
                    done(k)
                    continue
                end = state or "gone from squeue"
                if cell.tries > s.max_retries:
                    pending.discard(k)
                    cell.state, cell.note = FAILED, f"{end}; log {self.folder}/{job_id}_0_log.err"
                    failed.append(cell.cell)
                    report(Message(f"cell {cell.cell}: SLURM job {job_id} ended {end}, no retries left"))
                    continue
                if cancel_requested(self.lab, self.experiment):  # its end may be the cancel itself
                    self._cancelled(list(status.values()), [status[k] for k in pending], report)
                job = executor.submit(CellCommand(self.argv(spec)))
                report(Message(f"cell {cell.cell}: SLURM job {job_id} ended {end}; resubmitted as {job.job_id}"))
                cell.job, cell.tries, cell.state, cell.note = str(job.job_id), cell.tries + 1, REQUEUED, end
            write_cluster_status(self.lab, self.experiment, "slurm", list(status.values()))
            if pending:
                time.sleep(s.poll_s)
        if failed:
            raise UserError(
                f"{len(failed)} cell(s) failed on SLURM (first: {failed[0]}; logs in {self.folder}); "
                "finished cells are kept: rerun with --resume"
            )

    def _cancelled(self, every: list[ClusterCell], left: list[ClusterCell], report: Reporter) -> None:
        """`grid --cancel` (or the console) asked: scancel what is left and stop, resubmitting nothing."""
        jobs = [c.job for c in left if c.job]
        cancel(jobs)
        for c in left:
            c.state, c.note = FAILED, "cancelled"
        write_cluster_status(self.lab, self.experiment, "slurm", every)
        report(Message(f"grid {self.experiment}: cancelled {len(jobs)} SLURM job(s)"))
        raise UserError(f"grid {self.experiment!r} cancelled; finished cells are kept: rerun with --resume")


def cancel(job_ids: list[str]) -> None:
    """Cancel a grid's SLURM jobs (their cells keep their last epoch; --resume continues them)."""
    from reuse_console.engine.jobs.cluster_cancel import scancel

    scancel(job_ids)
