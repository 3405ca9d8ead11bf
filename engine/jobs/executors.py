"""Where a grid's cells run: here (local, the default), on a SLURM cluster (submitit) or on Ray.

reuse-console schedules nothing itself on a cluster: it names the work (content-named cells,
engine/grids/naming.py), hands each cell to the cluster engine as one `reuse-console grid-cell`
command line (engine/grids/remote.py), and collects the results from the shared lab. The engine
queues, places, retries and preempts; a retried, requeued or resubmitted cell resumes from its
last epoch, and a finished one is never trained again.

Settings come from the study's `[executor]` table and from command-line options (options win).
submitit and ray are imported only by the executor that uses them (extras `.[slurm]`, `.[ray]`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from reuse_console.engine.grids.leases import DEFAULT_LEASE_S
from reuse_console.engine.grids.naming import CONTENT, EXPERIMENT
from reuse_console.engine.grids.remote import task_argv
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

KINDS = ("local", "slurm", "ray")


@dataclass
class ExecutorSettings:
    """An `[executor]` table: which engine and what each cell's task asks it for."""

    kind: str = "local"
    partition: str | None = None  # slurm
    account: str | None = None  # slurm
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    time_min: int = 24 * 60  # slurm time limit per task; a cell that outlives it is requeued and resumes
    array_parallelism: int = 64  # slurm: cells running at once
    sbatch: dict[str, Any] = field(default_factory=dict)  # slurm: extra `#SBATCH --key=value` flags
    ray_address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001", "host:6379")
    max_retries: int = 2  # failed tasks (killed, node lost) run again, each resuming its cell
    lease_s: float = DEFAULT_LEASE_S  # cell leases (engine/grids/leases.py)
    threads: int | None = None  # torch CPU threads per task (default: cpus_per_task)
    poll_s: float = 5.0  # how often the grid process asks the engine about its tasks

    @property
    def naming(self) -> str:
        return EXPERIMENT if self.kind == "local" else CONTENT


_FIELDS = {f.name: f for f in dataclasses.fields(ExecutorSettings)}
_INTS = {"gpus_per_task", "cpus_per_task", "time_min", "array_parallelism", "max_retries"}
_MIN = {"gpus_per_task": 0, "cpus_per_task": 1, "time_min": 1, "array_parallelism": 1, "max_retries": 0}


def executor_settings(table: dict[str, Any] | None = None, **options: Any) -> ExecutorSettings:
    """Settings from an `[executor]` table, overridden by the options given (None = not given);
    every mistake is one UserError naming the field."""
    data = {**(table or {}), **{k: v for k, v in options.items() if v is not None}}
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UserError(f"[executor]: unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})")
    settings = ExecutorSettings(**data)
    if settings.kind not in KINDS:
        raise UserError(f"executor must be one of {', '.join(KINDS)}, got {settings.kind!r}")
    for name in _INTS:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < _MIN[name]:
            raise UserError(f"[executor]: {name} must be a whole number >= {_MIN[name]}, got {value!r}")
    for name in ("lease_s", "poll_s"):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"[executor]: {name} must be a positive number of seconds, got {value!r}")
    if settings.mem_gb is not None and (isinstance(settings.mem_gb, bool) or not settings.mem_gb > 0):
        raise UserError(f"[executor]: mem_gb must be a positive number, got {settings.mem_gb!r}")
    if not isinstance(settings.sbatch, dict):
        raise UserError('[executor]: sbatch must be a table of sbatch flags, e.g. { qos = "high" }')
    for name in ("partition", "account", "ray_address"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise UserError(f"[executor]: {name} must be text, got {value!r}")
    return settings


def study_executor_table(path: Path) -> dict[str, Any]:
    """The `[executor]` table of a study file ({} without one); the study itself is parsed elsewhere."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # load_study reports the file's problem in its own words
    table = data.get("executor", {})
    if not isinstance(table, dict):
        raise UserError(f"{path}: [executor] must be a table")
    return table


def check_private(folder: Path, lab: Lab) -> Path:
    """Create `folder` (0700) for files a cluster engine unpickles, refusing one another user could
    replace: it or a folder between it and the lab owned by someone else or writable by group or
    others, or the lab folder itself writable by group/others without the sticky bit. Everything
    that exists is checked before anything is created, so a refusal leaves the lab as it was."""
    root = lab.root.resolve()
    check_existing(folder, root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_owned_up_to(folder.resolve(), root)
    if folder.stat().st_mode & 0o077:
        raise UserError(f"{folder} must be private (chmod 700 it): it holds the pickled tasks the cluster runs")
    return folder


def check_existing(folder: Path, root: Path) -> None:
    """`check_owned_up_to` from the nearest folder of `folder` that exists (nothing when even the
    lab folder `root` does not exist yet: whatever gets created is this user's)."""
    here = folder.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    here = here.resolve()
    if here == root or root in here.parents:
        check_owned_up_to(here, root)


def check_owned_up_to(here: Path, root: Path) -> None:
    """Refuse a folder from `here` up to `root` that another user owns or could write."""
    while True:
        st = here.stat()
        if st.st_uid != os.getuid() and here != root:  # a shared lab itself may be someone else's
            raise UserError(f"{here} belongs to another user (uid {st.st_uid}): the cluster's task files must be yours")
        shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if shared and (here != root or not st.st_mode & stat.S_ISVTX):
            raise UserError(
                f"{here} is writable by other users (mode {stat.filemode(st.st_mode)}): anyone could replace the "
                "pickled tasks the cluster runs as you; chmod go-w it first"
            )
        if here == root or here == here.parent:
            break
        here = here.parent


def die_with_parent() -> None:
    """preexec_fn of a task's cell command (Linux): the kernel kills it when the task process that
    started it dies, so a retried task never meets an orphan still training (and leasing) its cell."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class ClusterRunner:
    """What the SLURM and Ray runners share: the grid they run and the command line of one cell."""

    def __init__(
        self, settings: ExecutorSettings, lab: Lab, experiment: str, *, device: str = "auto", precision: str = "fp32"
    ) -> None:
        self.settings, self.lab, self.experiment = settings, lab, experiment
        self.device, self.precision = device, precision

    def argv(self, spec: TrainSpec) -> list[str]:
        """The `reuse-console grid-cell` command a task runs for `spec` on its node."""
        s = self.settings
        return task_argv(
            str(self.lab.root.resolve()),
            spec,
            device=self.device,
            precision=self.precision,
            threads=s.threads or s.cpus_per_task,
            lease_s=s.lease_s,
        )
