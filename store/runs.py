"""Live run files: a training run's history, appended by its process while others read it.

HDF5 SWMR (single writer, multiple readers): every dataset is created chunked and resizable
before `swmr_mode` is switched on, the writer flushes after each append, and readers open with
`swmr=True`. Attributes cannot change in SWMR mode, so the changing parts (status, row counts)
are small datasets. Rows are appended as one compound record each, and the `rows` counter is
written only after the rows themselves are flushed, so a reader never sees a half row.

A writer killed with SIGKILL leaves a file whose superblock still says "open for writing": it
stays readable (`read_run`, via SWMR read mode) but cannot be reopened for writing, so
`RunWriter.resume` copies what it keeps into a fresh file and swaps it into place atomically.
Other HDF5 tools refuse such a file until the mark is cleared: `release_killed_run` does that
once the writer is known dead (store/swmr.py).

Run files are written with format bounds ("v110", latest): SWMR needs HDF5 1.10's formats at
least, and "latest" as the lower bound would make HDF5 2.x write datatype messages (version 5)
that the 1.10 tools Debian ships (h5ls, h5dump) cannot decode.
Layout: see store/SCHEMA.md ("runs").
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import UserError
from .h5 import atomic_h5, attr_str, get_json, open_h5, set_json, stamp
from .procs import pid_alive
from .swmr import clear_mark, read_superblock

KIND = "run"
STATUSES = ("running", "finished", "failed", "cancelled")
STEP_DTYPE = np.dtype([("epoch", "<i4"), ("step", "<i8"), ("loss", "<f8"), ("images_per_s", "<f8"), ("time", "<f8")])
_RESERVED = ("time", "step_rows")
_STATUS_DTYPE = "S16"
_STEP_CHUNK = 1024
_EPOCH_CHUNK = 64
LIBVER = "v110"  # h5py: lower bound HDF5 1.10 (SWMR, superblock v3), upper bound the library's latest


def _epoch_dtype(columns: list[str]) -> np.dtype:
    fields = [(c, "<f8") for c in columns] + [("time", "<f8"), ("step_rows", "<i8")]
    return np.dtype(fields)


def _check_columns(columns: list[str]) -> list[str]:
    columns = [str(c) for c in columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"duplicate epoch columns: {columns}")
    bad = [c for c in columns if c in _RESERVED or not c]
    if bad:
        raise ValueError(f"epoch columns {bad} are reserved or empty (reserved: {', '.join(_RESERVED)})")
    return columns


def _scalar_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The plain scalar fields of `meta`, for listings."""
    out: dict[str, Any] = {"kind": KIND}
    for key, value in meta.items():
        if isinstance(value, (str, int, float, bool)) and len(out) < 10:
            out[key] = value
    return out


class RunWriter:
    """The one process that appends to a run file. Use `create` or `resume`, then `finish`."""

    def __init__(self, f: h5py.File, path: Path) -> None:
        self._f = f
        self.path = path
        self.columns: list[str] = get_json(f, "epoch_columns", [])
        self._steps = f["steps"]
        self._epochs = f["epochs"]
        self._rows = f["rows"]
        self._status = f["status"]
        self._n_steps, self._n_epochs = (int(v) for v in self._rows[()])
        self._closed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        epoch_columns: list[str],
        meta: dict,
        provenance: dict | None = None,
        overwrite: bool = False,
    ) -> RunWriter:
        """Start a new run file at `path` (refuses an existing one unless `overwrite`)."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise UserError(f"run file {path} already exists (resume it, or choose another name)")
        columns = _check_columns(list(epoch_columns))
        _build(path, columns=columns, meta=dict(meta), provenance=provenance, created=None)
        return cls._open_for_append(path)

    @classmethod
    def resume(cls, path: Path, *, keep_epochs: int) -> RunWriter:
        """Reopen a run (finished, failed or killed mid-write) keeping its first `keep_epochs` epochs.

        The kept rows are copied into a fresh file which atomically replaces `path`, so a killed
        writer's file (which HDF5 refuses to reopen for writing) is never patched in place.
        Steps are kept up to the end of the last kept epoch.
        """
        path = Path(path)
        history = read_run(path)
        if history.status == "running" and history.writer.get("pid") != os.getpid():
            raise UserError(f"run {path.stem} is still being written by another process; stop it before resuming")
        n_epochs = len(next(iter(history.epochs.values()), np.zeros(0)))
        if keep_epochs < 0 or keep_epochs > n_epochs:
            raise UserError(f"run {path.stem} has {n_epochs} finished epochs; cannot resume after epoch {keep_epochs}")
        with open_run(path) as f:
            columns = get_json(f, "epoch_columns", [])
            provenance = get_json(f, "provenance", {})
            created = attr_str(f, "created")
            summary = get_json(f, "summary", None)  # as the run started: listings show the same fields
            rows = _rows(f)
            epochs = f["epochs"][: rows[1]][:keep_epochs]
            step_rows = int(epochs["step_rows"][-1]) if keep_epochs else 0
            steps = f["steps"][: min(rows[0], step_rows)]
        _build(
            path,
            columns=columns,
            meta=history.meta,
            provenance=provenance,
            created=created,
            steps=steps,
            epochs=epochs,
            summary=summary,
        )
        return cls._open_for_append(path)

    @classmethod
    def _open_for_append(cls, path: Path) -> RunWriter:
        f = h5py.File(path, "r+", libver=LIBVER, locking=False)
        try:
            f.swmr_mode = True
        except Exception:
            f.close()
            raise
        return cls(f, path)

    # -- appending -----------------------------------------------------------------------------

    def append_step(self, epoch: int, step: int, loss: float, images_per_s: float) -> None:
        """Append one optimisation step (epoch numbering is the caller's; 1-based by convention)."""
        row = np.array([(epoch, step, loss, images_per_s, time.time())], dtype=STEP_DTYPE)
        self._append(self._steps, self._n_steps, row)
        self._n_steps += 1
        self._publish()

    def append_epoch(self, values: dict[str, float]) -> None:
        """Append one epoch's values; keys must be exactly the run's epoch columns."""
        missing = set(self.columns) - set(values)
        unknown = set(values) - set(self.columns)
        if missing or unknown:
            raise ValueError(
                f"epoch values must have columns {self.columns} (missing {sorted(missing)}, unknown {sorted(unknown)})"
            )
        record = tuple(float(values[c]) for c in self.columns) + (time.time(), self._n_steps)
        row = np.array([record], dtype=self._epochs.dtype)
        self._append(self._epochs, self._n_epochs, row)
        self._n_epochs += 1
        self._publish()

    def finish(self, status: str = "finished") -> None:
        """Record the final status and close the file (it then opens normally everywhere)."""
        if status not in STATUSES[1:]:
            raise ValueError(f"status must be one of {STATUSES[1:]}, not {status!r}")
        if self._closed:
            return
        self._status[()] = np.bytes_(status.encode())
        self._f.flush()
        self._f.close()
        self._closed = True

    def close(self) -> None:
        """Close without a final status (the run then reads as lost once this process is gone)."""
        if not self._closed:
            self._f.close()
            self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.finish("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("cancelled")
        else:
            self.finish("failed")

    @property
    def n_steps(self) -> int:
        return self._n_steps

    @property
    def n_epochs(self) -> int:
        return self._n_epochs

    def _append(self, ds: h5py.Dataset, n: int, row: np.ndarray) -> None:
        ds.resize((n + 1,))
        ds[n : n + 1] = row

    def _publish(self) -> None:
        """Flush the rows first, then the counter that makes them visible to readers."""
        self._f.flush()
        self._rows[:] = (self._n_steps, self._n_epochs)
        self._f.flush()


def _build(
    path: Path,
    *,
    columns: list[str],
    meta: dict,
    provenance: Mapping[str, Any] | None,
    created: str | None,
    steps: np.ndarray | None = None,
    epochs: np.ndarray | None = None,
    summary: dict[str, Any] | None = None,
) -> None:
    """Write a complete, closed run file (status running) to a temp file and move it to `path`."""
    steps = np.zeros(0, STEP_DTYPE) if steps is None else steps
    epochs = np.zeros(0, _epoch_dtype(columns)) if epochs is None else epochs
    with atomic_h5(path, libver=LIBVER) as f:
        stamp(f, KIND, provenance)
        if created:
            f.attrs["created"] = created
        set_json(f, "meta", meta)
        set_json(f, "epoch_columns", columns)
        set_json(f, "summary", summary if summary is not None else _scalar_summary(meta))
        set_json(f, "writer", {"pid": os.getpid(), "host": socket.gethostname()})
        n_s, n_e = len(steps), len(epochs)
        f.create_dataset("steps", data=steps, maxshape=(None,), chunks=(_STEP_CHUNK,), dtype=STEP_DTYPE)
        f.create_dataset("epochs", data=epochs, maxshape=(None,), chunks=(_EPOCH_CHUNK,), dtype=_epoch_dtype(columns))
        rows = f.create_dataset("rows", data=np.array([n_s, n_e], dtype="<i8"))
        rows.attrs["columns"] = json.dumps(["steps", "epochs"])
        f.create_dataset("status", data=np.bytes_(b"running"), dtype=_STATUS_DTYPE)


@dataclass
class RunHistory:
    """Everything a run file holds, as arrays: what the TUI plots and `train --resume` needs."""

    meta: dict
    status: str
    steps: dict[str, np.ndarray]
    epochs: dict[str, np.ndarray]
    writer: dict = field(default_factory=dict)  # {"pid", "host"} of the process that appends

    @property
    def n_epochs(self) -> int:
        return len(next(iter(self.epochs.values()), ()))

    @property
    def n_steps(self) -> int:
        return len(self.steps["step"])


def open_run(path: Path) -> h5py.File:
    """Open a run file for reading whether it is finished, being written, or left by a killed writer."""
    return open_h5(path)


def _rows(f: h5py.File) -> tuple[int, int]:
    ds = f["rows"]
    if f.swmr_mode:
        ds.refresh()
    n_s, n_e = (int(v) for v in ds[()])
    return n_s, n_e


def run_status(f: h5py.File) -> str:
    """The run's status; a "running" run whose writer died on this host reads as "lost"."""
    ds = f["status"]
    if f.swmr_mode:
        ds.refresh()
    raw = ds[()]
    status = raw.decode() if isinstance(raw, bytes) else str(raw)
    return effective_status(status, get_json(f, "writer", {}) or {})


def effective_status(status: str, writer: Mapping[str, Any]) -> str:
    """ "running" as written, unless the writing process is known to be gone: then "lost"."""
    if status == "running" and writer_gone(writer):
        return "lost"
    return status


def writer_gone(writer: Mapping[str, Any]) -> bool:
    """Is the process named by a run's `writer` attribute known to be dead?

    Only a writer on this host can be: a pid means nothing on another host (a lab on a shared
    file system), so such a writer always counts as possibly alive. A pid reused by a new
    process counts as alive too (errs towards leaving the file alone)."""
    return writer.get("host") == socket.gethostname() and not pid_alive(int(writer.get("pid", 0)))


def release_killed_run(path: Path) -> bool:
    """Make a killed writer's run file readable by every HDF5 tool (h5ls, h5dump, plain h5py):
    clear its open-for-write mark, as `h5clear -s` does, when its writer is known dead.

    A file whose writer is alive, or runs on another host (whose pid this host cannot check:
    clearing the mark under a live writer would let a plain reader open a file it is changing,
    and the writer rewrites the mark anyway), is left alone; so is anything that is not a run
    file with a v2/v3 superblock. The superblock is checked first (a clean file costs one small
    read), the writer is read from the same file (same inode before and after), and the change
    goes to that inode: a run swapped into place meanwhile by `RunWriter.resume` is a fresh file
    of a live writer and is never touched. Returns whether the file changed; never raises.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if not read_superblock(fd).marked:
            return False
        with open_run(path) as f:
            writer = get_json(f, "writer", {}) or {}
            kind = attr_str(f, "kind")
        held, now = os.fstat(fd), os.stat(path)
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino) or kind != KIND or not writer_gone(writer):
            return False
        return clear_mark(fd)
    except Exception:  # not HDF5, damaged, another superblock version, odd writer: left as it is
        return False
    finally:
        os.close(fd)


def read_run(path: Path) -> RunHistory:
    """Read a run file; safe while another process appends to it, or after it was killed."""
    path = Path(path)
    try:
        f = open_run(path)
    except (FileNotFoundError, UserError):
        raise
    except OSError as exc:
        raise UserError(f"cannot read run file {path}: {str(exc).splitlines()[0]}") from exc
    with f:
        if attr_str(f, "kind") != KIND:
            raise UserError(f"{path} is not a run file (kind {attr_str(f, 'kind') or 'missing'!r})")
        n_s, n_e = _rows(f)
        status = run_status(f)
        for name in ("steps", "epochs"):
            if f.swmr_mode:
                f[name].refresh()
        steps = f["steps"][:n_s]
        epochs = f["epochs"][:n_e]
        columns = get_json(f, "epoch_columns", [])
        return RunHistory(
            meta=get_json(f, "meta", {}) or {},
            status=status,
            steps={name: np.asarray(steps[name]) for name in STEP_DTYPE.names or ()},
            epochs={name: np.asarray(epochs[name]) for name in [*columns, "time"]},
            writer=get_json(f, "writer", {}) or {},
        )
