"""A listing cache per kind folder: what was read from each file, keyed by the file's stat.

Listing a lab opens every object file (about 1 ms each: 10 s for 10,000 objects, see
bench/lab_listing.py). Finished objects never change in place (they are replaced, which gives a
new inode), so what a listing read from a file stays true while the file's identity and stat
are unchanged. This module keeps that in `<kind>/.listing-<name>.json` and re-reads only files
that are new or changed; the listing then costs one `stat` per file.

Never trusted over the files: a cached value is used only when the file's inode, size, mtime and
ctime are exactly what they were when it was read; files that vanished drop out; anything the
index holds that does not parse is ignored. A file modified less than `RACY_S` before it was read
is not cached (a second change within the file system's timestamp tick would keep its stat), and
neither is anything the reader says may still change (a live run). The index is rewritten, when
it changed, through a per-process temporary file and `os.replace`, so several processes listing
and writing at once each leave a whole index (the last one wins; any of them is only a cache). A
lab that cannot be written (read-only mount) is listed without the cache.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .h5 import TMP_PREFIX

INDEX_PREFIX = ".listing-"
VERSION = 1
# Seconds: a file changed this recently may change again within the same mtime tick (coarse
# kernel clocks, NFS servers); the margin also absorbs small clock skew between NFS client and server.
RACY_S = 2.0

Stat = tuple[int, int, int, int]
Reader = Callable[[Path], tuple[Any, bool]]


def index_path(folder: Path, name: str) -> Path:
    return folder / f"{INDEX_PREFIX}{name}.json"


def file_stat(st: os.stat_result) -> Stat:
    """What identifies one version of a file: inode, size, mtime and ctime (ns)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _load(path: Path) -> dict[str, tuple[Stat, Any]]:
    """The index's entries; empty when it is missing, damaged or of another version."""
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") != VERSION:
            return {}
        out: dict[str, tuple[Stat, Any]] = {}
        for name, row in data["files"].items():
            stat, value = row
            if len(stat) == 4 and all(isinstance(s, int) for s in stat):
                out[name] = (tuple(stat), value)
        return out
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _save(path: Path, files: dict[str, tuple[Stat, Any]]) -> None:
    """Write the index whole, atomically; a lab we cannot write is simply listed uncached."""
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{socket.gethostname()}{path.name}")  # unique across NFS clients
    try:
        payload = json.dumps({"version": VERSION, "files": {k: [list(s), v] for k, (s, v) in files.items()}})
        tmp.write_text(payload)
        os.replace(tmp, path)
    except (OSError, TypeError, ValueError):
        with contextlib.suppress(OSError):
            tmp.unlink()


def cached_read(folder: Path, paths: Iterable[Path], read: Reader, *, name: str) -> list[Any]:
    """`read(path)[0]` for each path (all in `folder`), from the index where the file is unchanged.

    `read` returns the value (JSON-able) and whether it may be cached (False for a damaged file
    or one that is still being written). Values come back in the order of `paths`.
    """
    index = index_path(folder, name)
    old = _load(index)
    new: dict[str, tuple[Stat, Any]] = {}
    out: list[Any] = []
    for path in paths:
        try:
            stat = file_stat(path.stat())
        except OSError:
            stat = None
        hit = old.get(path.name)
        if stat is not None and hit is not None and hit[0] == stat:
            new[path.name] = hit
            out.append(hit[1])
            continue
        before = time.time()
        value, cacheable = read(path)
        out.append(value)
        if cacheable and stat is not None and stat[2] < (before - RACY_S) * 1e9:
            try:
                unchanged = file_stat(path.stat()) == stat
            except OSError:
                unchanged = False
            if unchanged:
                new[path.name] = (stat, value)
    if new != old and folder.is_dir():
        _save(index, new)
    return out
