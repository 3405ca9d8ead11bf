"""The lab directory: one folder per kind, one HDF5 file per object, ids, listing and lookup.

Listing reads only each file's root attributes, and only of files new or changed since the last
listing (the per-kind listing index, store/listing_index.py), so it stays fast for 10,000 objects;
an unreadable file is listed with its reason instead of breaking the listing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5f, h5p, h5s, h5t

from . import claims, listing_index, swmr
from .errors import NotFound, UserError
from .h5 import TMP_PREFIX, check_schema
from .procs import pid_alive
from .runs import effective_status, release_killed_run

KINDS: tuple[str, ...] = (
    "datasets",
    "checkpoints",
    "runs",
    "scans",
    "comparisons",
    "plans",
    "experiments",
    "jobs",
)
SUFFIX = ".h5"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
DEFAULT_ROOT = "lab"


def check_name(name: str) -> str:
    """Return `name` if it can be an object id, else raise a UserError saying what is allowed."""
    if not _ID.match(name) or name.endswith(SUFFIX):
        raise UserError(
            f"invalid name {name!r}: use letters, digits, '.', '_', '+' or '-' (at most 100, "
            "starting with a letter or digit)"
        )
    return name


MAX_SUFFIX = 10_000


def next_free_name(base: str, take: Callable[[str], bool]) -> str:
    """`base`, else `base-2`, `base-3`, ...: the first name `take` accepts.

    The one rule for a name derived from a command's inputs when that name is taken (lab objects
    through `Lab.unique_name`, job ids). `take(name)` checks one name and may claim it: names are
    tried in order, so choosers that claim as they take get different names even at the same time.
    """
    check_name(base)
    for n in range(1, MAX_SUFFIX + 1):
        name = base if n == 1 else f"{base}-{n}"
        if take(name):
            return name
    raise UserError(f"every name from {base!r} to '{base}-{MAX_SUFFIX}' is taken: choose one with --name")


@dataclass(frozen=True)
class Entry:
    """One object of the lab as listing sees it: where it is and its root attributes."""

    id: str
    kind: str
    path: Path
    created: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_entry(kind: str, path: Path) -> Entry:
    """Read one file's root attributes; never raises for a damaged file.

    Uses h5py's low-level API (about twice as fast as `h5py.File` + `.attrs` for a listing of
    thousands of files; see bench/lab_listing.py).
    """
    obj_id = path.name[: -len(SUFFIX)]
    try:
        fid = _open_fid(path)
        try:
            check_schema(_attr(fid, b"schema"), path)
            summary = json.loads(_attr(fid, b"summary") or "{}") or {}
            if kind == "runs" and b"status" in fid:
                summary = {**summary, **_run_progress(fid)}
            entry = Entry(id=obj_id, kind=kind, path=path, created=_attr(fid, b"created") or "", summary=summary)
            marked = bool(fid.get_intent() & h5f.ACC_SWMR_READ)  # a plain open was refused
        finally:
            fid.close()
    except Exception as exc:  # a listing shows damage, it does not stop on it
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Entry(id=obj_id, kind=kind, path=path, error=f"unreadable: {reason}")
    if marked and kind == "runs" and entry.summary.get("status") == "lost":
        release_killed_run(path)  # its writer is dead: once, then it opens everywhere (store/swmr.py)
    return entry


def _fapl(swmr: bool) -> h5p.PropFAID:
    """File access as `open_h5` has it. The close degree stays HDF5's default, as h5py leaves it:
    the console lists the lab in one thread while another reads a file, and HDF5 refuses to open
    a file already open in the process with another close degree ("file close degree doesn't
    match"), which read as a damaged file."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_file_locking(False, True)
    if swmr:
        fapl.set_libver_bounds(h5f.LIBVER_LATEST, h5f.LIBVER_LATEST)
    return fapl


def _open_fid(path: Path) -> h5f.FileID:
    """Low-level twin of `open_h5`: plain read-only open, else SWMR read (live or killed run files)."""
    name = os.fsencode(path)
    try:
        return h5f.open(name, h5f.ACC_RDONLY, fapl=_fapl(False))
    except OSError as first:
        if not swmr.open_for_writing(path):
            raise
        try:
            return h5f.open(name, h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=_fapl(True))
        except OSError:
            raise first from None


def _attr(obj: Any, name: bytes) -> Any:
    """One attribute of a low-level object, strings decoded; None when absent."""
    if not h5a.exists(obj, name):
        return None
    attr = h5a.open(obj, name)
    tid = attr.get_type()
    if tid.get_class() == h5t.STRING and tid.is_variable_str():
        out = np.empty(attr.shape, dtype=h5py.string_dtype())
        attr.read(out, mtype=h5t.py_create(out.dtype))
    else:
        out = np.empty(attr.shape, dtype=attr.dtype)
        attr.read(out)
    value = out[()]
    return value.decode() if isinstance(value, bytes) else value


def _read_dataset(fid: h5f.FileID, name: bytes, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    ds = h5d.open(fid, name)
    out = np.empty(shape, dtype=dtype)
    ds.read(h5s.ALL, h5s.ALL, out)
    return out


def _run_progress(fid: h5f.FileID) -> dict[str, Any]:
    """A run's live status and epoch count (they change, so they are datasets, not attributes)."""
    raw = _read_dataset(fid, b"status", (), "S16").item().decode()
    rows = _read_dataset(fid, b"rows", (2,), "<i8")
    writer = json.loads(_attr(fid, b"writer") or "{}")
    return {"status": effective_status(raw, writer), "epochs_done": int(rows[1])}


class Lab:
    """A lab directory. Creating a Lab object touches nothing; folders appear on first write."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def from_option(cls, root: Path | str | None) -> Lab:
        """The lab named by `--lab`, else `$REUSE_LAB`, else `./lab`."""
        return cls(root or os.environ.get("REUSE_LAB") or DEFAULT_ROOT)

    def folder(self, kind: str, *, create: bool = False) -> Path:
        """The folder of one kind of object."""
        if kind not in KINDS:
            raise UserError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"lab {self.root} is not a folder: --lab (or $REUSE_LAB) must name a directory")
        path = self.root / kind
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, kind: str, obj_id: str) -> Path:
        """Where object `obj_id` of `kind` lives (whether or not it exists yet)."""
        return self.folder(kind) / f"{check_name(obj_id)}{SUFFIX}"

    def exists(self, kind: str, obj_id: str) -> bool:
        return self.path(kind, obj_id).exists()

    def ensure_new(self, kind: str, obj_id: str) -> Path:
        """The path for a new object written at once: claimed by this process until its file
        lands (an unpinned claim, see store/claims.py; `unique_name` reserves names this way);
        refuses an existing object and one another live job is writing. Work that may still fail
        before the write uses `claim(..., new=True)` instead."""
        path = self.path(kind, obj_id)
        claims.take(path, self._label(kind, obj_id), pin=False, new=True)
        if path.exists():
            claims.abandon(path)
            raise self._taken(kind, obj_id)
        return path

    @contextlib.contextmanager
    def claim(
        self, kind: str, obj_id: str, *, new: bool = False, hint: str = "choose another --name"
    ) -> Iterator[Path]:
        """Hold the name `kind/obj_id` for the block (`with lab.claim(...) as path:`); yields its path.

        The one way to hold a name while writing an object (store/claims.py), for one write or a
        whole job (a training run rewrites its checkpoints every epoch, a scan its progress file,
        a grid its experiment after every cell): another process claiming the name meanwhile gets
        a UserError naming this one. The claim ends with the block however it ends, so a refusal
        half-way (bad input found after some work) leaves no claim file behind, even in a
        long-lived process like the console. Re-entrant: a name this process already holds (from
        `unique_name`, say) stays held until the outermost block ends.
        `new`: the object must not exist yet (checked once claimed, so two writers cannot both
        pass; refused as "already exists (<hint>)"), and its first landing never replaces a file.
        Without it the block may resume or replace an existing object.
        """
        path = self.path(kind, obj_id)
        with claims.holding(path, self._label(kind, obj_id), new=new):
            if new and path.exists():
                raise self._taken(kind, obj_id, hint)
            yield path

    @staticmethod
    def _label(kind: str, obj_id: str) -> str:
        return f"{kind[:-1]} {obj_id!r}"

    def _taken(self, kind: str, obj_id: str, hint: str = "choose another --name") -> UserError:
        return UserError(f"{kind[:-1]} {obj_id!r} already exists in {self.root} ({hint})")

    def claimed(self, kind: str, obj_id: str) -> bool:
        """Is the name being written by a live job (this process included)?"""
        return claims.is_live(claims.claim_path(self.path(kind, obj_id)))

    def unique_name(self, kind: str, base: str, *, free: Callable[[str], bool] | None = None) -> str:
        """`base`, or `base-2`, `base-3`... (`next_free_name`): the first name free in `kind` (and
        for which `free(name)` holds, for the other files the object writes), claimed by this
        process like `ensure_new`, so two jobs choosing at once get different names."""

        def take(name: str) -> bool:
            if self.exists(kind, name) or self.claimed(kind, name) or (free is not None and not free(name)):
                return False
            try:
                self.ensure_new(kind, name)
            except UserError:
                return False  # taken a moment ago by another job: next
            return True

        return next_free_name(base, take)

    def files(self, kind: str) -> list[Path]:
        """Finished object files of one kind, sorted by name (temporary files are skipped)."""
        folder = self.folder(kind)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(TMP_PREFIX))

    def entries(self, kind: str | None = None, *, cached: bool = True) -> list[Entry]:
        """Every object of `kind` (or of all kinds), each with its summary or its error.

        `cached`: take unchanged files' attributes from the kind's listing index
        (store/listing_index.py) and re-read only new or changed files; False reads every file."""
        kinds = (kind,) if kind else KINDS
        if not cached:
            return [read_entry(k, p) for k in kinds for p in self.files(k)]
        return [e for k in kinds for e in self._cached_entries(k)]

    def _cached_entries(self, kind: str) -> list[Entry]:
        def read(path: Path) -> tuple[dict[str, Any], bool]:
            entry = read_entry(kind, path)
            live = kind == "runs" and entry.summary.get("status") in ("running", "lost")
            return {"created": entry.created, "summary": entry.summary, "error": entry.error}, entry.ok and not live

        paths = self.files(kind)
        values = listing_index.cached_read(self.folder(kind), paths, read, name="entries")
        return [
            Entry(
                id=p.name[: -len(SUFFIX)],
                kind=kind,
                path=p,
                created=v["created"],
                summary=v["summary"],
                error=v["error"],
            )
            for p, v in zip(paths, values, strict=True)
        ]

    def kinds_of(self, obj_id: str) -> list[str]:
        """Every kind holding an object `obj_id` (`train --name X` makes a run and a checkpoint X)."""
        check_name(obj_id)
        return [k for k in KINDS if self.path(k, obj_id).exists()]

    def resolve(self, ref: str, kind: str | None = None, *, prefer: tuple[str, ...] = ()) -> Entry:
        """Find an object by `id` or `kind/id`; raise NotFound or say when an id is ambiguous.

        `prefer`: kinds, in order, that win when a bare id is in several kinds (instead of the
        ambiguity error); the caller says which others it hides (see `kinds_of`)."""
        if "/" in ref:
            given = ref
            kind, _, ref = ref.partition("/")
            if kind not in KINDS and _ID.match(kind) and "/" not in ref:
                raise UserError(f"unknown kind {kind!r} in {given!r}: choose one of {', '.join(KINDS)}")
            if kind not in KINDS or "/" in ref:
                raise UserError(f"invalid name {given!r}: use NAME or KIND/NAME, KIND one of {', '.join(KINDS)}")
        check_name(ref)
        hits = [kind] if kind and self.path(kind, ref).exists() else [] if kind else self.kinds_of(ref)
        if not hits:
            where = kind[:-1] if kind else "object"
            raise NotFound(f"no {where} {ref!r} in lab {self.root} (see `reuse-console ls`)")
        chosen = [k for k in prefer if k in hits]
        if len(hits) > 1 and chosen:
            hits = chosen[:1]
        if len(hits) > 1:
            options = ", ".join(f"{k}/{ref}" for k in hits)
            raise UserError(f"{ref!r} is ambiguous: say which one ({options})")
        return read_entry(hits[0], self.path(hits[0], ref))

    def cleanup(self, older_than_s: float = 3600.0, *, min_age_s: float = 0.0) -> list[Path]:
        """Remove temporary files and claims left by killed writers (their process gone, or old),
        and clear the open-for-write mark of run files whose writer died on this host, so h5ls and
        h5dump open them (`store.runs.release_killed_run`; the returned paths are the removed ones).

        `min_age_s` spares temp files touched more recently than that: the CLI tidies the lab on
        every start with a few minutes here, so a writer on another host sharing the lab (whose
        pid means nothing on this one) is never robbed of the file it is writing."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for kind in KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            for p in folder.glob(f"{TMP_PREFIX}*"):
                try:
                    age = time.time() - p.stat().st_mtime
                except FileNotFoundError:
                    continue  # its writer just renamed or removed it
                if age < min_age_s or (_writer_alive(p) and age < older_than_s):
                    continue
                p.unlink(missing_ok=True)
                removed.append(p)
            removed.extend(p for p in folder.glob(f"{claims.CLAIM_PREFIX}*") if claims.remove_stale(p))
        for run in self.files("runs"):
            release_killed_run(run)
        return removed


def _writer_alive(tmp: Path) -> bool:
    """Temporary names carry the writer's pid: `.tmp-<pid>-<name>`."""
    try:
        pid = int(tmp.name[len(TMP_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return False
    return pid_alive(pid)
