"""HDF5 I/O of the lab: opening any lab file for reading, atomic writing, provenance stamps
and tensor <-> dataset conversion.

Finished objects are written to a temporary file in the target folder, flushed, fsynced and
`os.replace`d into place, so a killed writer never leaves a half object under a real name.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from reuse_console import __version__

from . import claims, swmr
from .errors import DamagedFile, UserError

SCHEMA_VERSION = 1
TMP_PREFIX = ".tmp-"


def open_h5(path: Path) -> h5py.File:
    """Open a lab file read-only, whatever state it is in.

    A run file being appended to (SWMR), or one left by a writer killed with SIGKILL, has its
    superblock marked "open for writing" and refuses a normal open; SWMR read mode opens both.
    Locking is off so readers never block (or are blocked by) a writer. A file that is no
    readable HDF5 (truncated, overwritten) raises DamagedFile, one made by a newer release
    (its `schema` attribute above SCHEMA_VERSION) a UserError: both name the file.
    """
    try:
        f = h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise
    except OSError as first:
        try:
            if not swmr.open_for_writing(path):
                raise first
            f = h5py.File(path, "r", swmr=True, libver="latest", locking=False)
        except OSError:
            reason = str(first).splitlines()[0] if str(first) else type(first).__name__
            raise DamagedFile(
                f"cannot read lab file {path}: {reason} (damaged or truncated: delete it or restore it from a backup)"
            ) from None
    try:
        check_schema(f.attrs.get("schema"), path)
    except UserError:
        f.close()
        raise
    return f


def check_schema(schema: Any, path: Path) -> None:
    """Refuse a file written by a newer reuse-console: its layout may mean something else."""
    if isinstance(schema, (int, np.integer)) and int(schema) > SCHEMA_VERSION:
        raise UserError(
            f"{path} was made by a newer reuse-console (schema {int(schema)} > {SCHEMA_VERSION}): "
            "upgrade reuse-console to read it"
        )


def tool_version() -> str:
    """The installed reuse-console version, stamped into every file."""
    return __version__


def now_iso() -> str:
    """UTC time in ISO 8601 with seconds, the format of every `created` attribute."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Create a file all-or-nothing: yield a temp path in the same folder to write and close,
    then fsync it, rename it to `path` and fsync the folder.

    If the body raises, the temp file is removed and `path` is untouched. The temp name carries
    the writer's pid (`.tmp-<pid>-<name>`) so `Lab.cleanup` can tell abandoned ones.
    """
    path = Path(path)
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{path.name}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        claims.land(tmp, path)  # os.replace, or a no-replace link for a claimed new object
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        claims.abandon(path)
        reason = disk_full(exc)
        if reason:
            raise UserError(f"disk full while writing {path}: {reason}; the lab is unchanged") from exc
        raise


_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_FULL_TEXT = re.compile(
    rf"errno = ({'|'.join(str(e) for e in sorted(_FULL_ERRNOS))})\b|No space left on device|File too large|Disk quota exceeded"
)


def disk_full(exc: BaseException | None) -> str | None:
    """Why a write failed when the disk, the quota or the file-size limit is full, else None.

    Python raises OSError with errno ENOSPC/EDQUOT/EFBIG; HDF5 reports the same through h5py as an
    OSError or RuntimeError ("Can't write data", "unable to extend file properly") whose text
    carries `errno = 28`; the chain of causes is searched too.
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return os.strerror(exc.errno)
        found = _FULL_TEXT.search(str(exc))
        if found:
            return os.strerror(int(found.group(1))) if found.group(1) else found.group(0)
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


@contextlib.contextmanager
def atomic_h5(path: Path, *, libver: str | None = None) -> Iterator[h5py.File]:
    """Write an HDF5 file all-or-nothing: yield a file, then fsync and rename it to `path`.

    If the body raises, nothing is written and `path` is untouched. The file is built in memory
    (HDF5's core driver) and its image written out with plain file I/O: a disk that fills up
    then fails one Python write, cleanly, instead of HDF5's own write-failure path, which could
    crash the process when it closed the refused file (seen with a checkpoint on a full tmpfs).
    Objects are MBs to a few hundred MBs, so holding one in memory twice is affordable.
    """
    with atomic_path(path) as tmp:
        f = h5py.File(tmp, "w", libver=libver, driver="core", backing_store=False)
        try:
            yield f
            f.flush()
            image = f.id.get_file_image()
        finally:
            f.close()
        with open(tmp, "wb") as fh:
            fh.write(image)


def stamp(f: h5py.File, kind: str, provenance: Mapping[str, Any] | None = None) -> None:
    """Write the attributes every lab file carries: schema, kind, created, version, provenance."""
    f.attrs["schema"] = SCHEMA_VERSION
    f.attrs["kind"] = kind
    f.attrs["created"] = now_iso()
    f.attrs["version"] = tool_version()
    prov = {"command": " ".join(sys.argv), "host": socket.gethostname()}
    prov.update(dict(provenance or {}))
    f.attrs["provenance"] = json.dumps(prov, sort_keys=True, default=str)


def set_json(obj: h5py.HLObject, name: str, value: Any) -> None:
    """Store a JSON-serialisable value as a string attribute."""
    obj.attrs[name] = json.dumps(value, sort_keys=True, default=str)


def get_json(obj: h5py.HLObject, name: str, default: Any = None) -> Any:
    """Read a JSON string attribute written by `set_json`."""
    if name not in obj.attrs:
        return default
    raw = obj.attrs[name]
    if isinstance(raw, bytes):
        raw = raw.decode()
    return json.loads(raw)


def attr_str(obj: h5py.HLObject, name: str, default: str = "") -> str:
    """A string attribute, decoded whatever h5py returns."""
    raw = obj.attrs.get(name, default)
    if isinstance(raw, bytes):
        return raw.decode()
    return str(raw)


def write_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    """A 1-D dataset of UTF-8 strings (readable by h5dump)."""
    dt = h5py.string_dtype("utf-8")
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=dt)


def read_strings(ds: h5py.Dataset) -> list[str]:
    """Decode a dataset written by `write_strings`."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]
