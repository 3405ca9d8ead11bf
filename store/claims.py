"""Name claims: at most one writer per lab object at a time.

Two jobs asking for the same new name both pass the "does it exist?" check when they start; the
second one's final rename would then silently replace the first one's object. So a writer first
claims the name: a small file `<lab>/<kind>/.claim-<id>` that the writing process keeps open
with an exclusive `flock`. The kernel drops that lock when the process ends, however it ends
(SIGKILL included), so a dead writer's claim is simply free for the next taker: no pid guessing,
and a pid reused by the system cannot keep it alive. The file holds the writer's pid, start time
and host only for the message the other job sees. Where a file system has no flock the claim
falls back to that pid (+ start time) check.

A claim is taken in one of two ways:
- pinned, `with holding(...)` (what `Lab.claim`, the lab's way to claim a name, does): kept for
  the block, one write or a whole job (a training run rewrites its checkpoints every epoch, a scan
  its progress file every chunk), released when the block ends;
- unpinned (`take(..., pin=False)`, what `Lab.ensure_new` and `Lab.unique_name` do): released when
  the object's final atomic rename lands (`land`, called by `store.h5.atomic_path`), when that
  write fails, or when a pinned block on the same name ends.
A claim taken for an object that did not exist yet is "new": its first landing uses a hard link,
which never replaces a file, as a second line of defence against writers that did not claim.
Claims are per process and re-entrant: claiming a name this process already holds is a no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .procs import pid_alive

CLAIM_PREFIX = ".claim-"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}

try:
    import fcntl
except ImportError:  # not Unix: pid-based claims only
    fcntl = None  # type: ignore[assignment]


@dataclass
class Claim:
    """This process's hold on one object name."""

    path: Path  # the claim file
    target: Path  # the object file it protects
    label: str  # "checkpoint 'x'", for messages
    fd: int
    pins: int = 0
    new: bool = False
    made_folder: bool = False  # the kind's folder did not exist: removed again if left empty


_lock = threading.RLock()
_held: dict[str, Claim] = {}


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) must not keep its parent's claims alive after the
    parent is killed: it closes its copies (the parent's lock stays) and holds nothing."""
    global _lock
    _lock = threading.RLock()
    for claim in _held.values():
        with contextlib.suppress(OSError):
            os.close(claim.fd)
    _held.clear()


@atexit.register
def _release_at_exit() -> None:
    """A process that ends normally leaves no claim file behind (a killed one leaves a stale file,
    which the next taker or `Lab.cleanup` handles)."""
    release_all()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def claim_path(target: Path) -> Path:
    """The claim file of object file `target` (`kind/<id>.h5` -> `kind/.claim-<id>`)."""
    name = target.name[:-3] if target.name.endswith(".h5") else target.name
    return target.parent / f"{CLAIM_PREFIX}{name}"


def _key(target: Path) -> str:
    return os.path.abspath(claim_path(Path(target)))


def held(target: Path) -> Claim | None:
    """This process's claim on `target`, if it holds one."""
    with _lock:
        return _held.get(_key(target))


def take(target: Path, label: str, *, pin: bool = True, new: bool = False) -> Claim:
    """Claim object file `target`, or raise UserError naming the live job that holds it."""
    target = Path(target)
    with _lock:
        claim = _held.get(_key(target))
        if claim is None:
            path = claim_path(target)
            made = not path.parent.is_dir()
            claim = Claim(path, target, label, _acquire(path, label), made_folder=made)
            _held[_key(target)] = claim
        if pin:
            claim.pins += 1
        claim.new = claim.new or new
        return claim


def release(claim: Claim) -> None:
    """Give a claim up (remove its file while still holding the lock, then close)."""
    with _lock:
        if _held.get(_key(claim.target)) is claim:
            del _held[_key(claim.target)]
        with contextlib.suppress(FileNotFoundError):
            claim.path.unlink()
        with contextlib.suppress(OSError):
            os.close(claim.fd)
        if claim.made_folder:  # nothing was written: leave the lab as it was
            with contextlib.suppress(OSError):
                claim.path.parent.rmdir()


def release_target(target: Path) -> None:
    """Release this process's claim on `target`, if any, whatever its pins."""
    claim = held(target)
    if claim is not None:
        release(claim)


@contextlib.contextmanager
def holding(target: Path, label: str, *, new: bool = False) -> Iterator[Claim]:
    """Hold a pinned claim on `target` for the duration of the block."""
    claim = take(target, label, pin=True, new=new)
    try:
        yield claim
    finally:
        with _lock:
            claim.pins -= 1
            if claim.pins <= 0:
                release(claim)


def land(tmp: Path, target: Path) -> None:
    """Move finished temp file `tmp` onto `target`, honouring this process's claim on it.

    A claimed new object is linked (never replacing a file someone else wrote meanwhile);
    anything else is `os.replace`d. An unpinned claim ends with its landing.
    """
    with _lock:
        claim = _held.get(_key(target))
    if claim is not None and claim.new:
        _link_new(tmp, target, claim.label)
        claim.new = False
    else:
        os.replace(tmp, target)
    if claim is not None and claim.pins <= 0:
        release(claim)


def abandon(target: Path) -> None:
    """A write of `target` failed: an unpinned claim on it ends here (a pinned one stays)."""
    claim = held(target)
    if claim is not None and claim.pins <= 0:
        release(claim)


def _link_new(tmp: Path, target: Path, label: str) -> None:
    exists = UserError(f"{label} already exists (another job wrote it meanwhile); choose another --name")
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise exists from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if target.exists():  # no hard links on this file system: check, then rename
            raise exists from None
        os.replace(tmp, target)
        return
    tmp.unlink()


# -- the claim file ----------------------------------------------------------------------------


def _me() -> dict[str, Any]:
    created = 0.0
    with contextlib.suppress(Exception):
        import psutil

        created = float(psutil.Process().create_time())
    return {"pid": os.getpid(), "created": created, "host": socket.gethostname(), "since": time.time()}


def _acquire(path: Path, label: str) -> int:
    """Open and lock `path` exclusively; the returned fd holds the claim until closed."""
    for _ in range(50):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileNotFoundError:  # another job removed the empty folder it had made: again
            continue
        try:
            if not _lock_fd(fd, path, label):
                continue  # the holder released the claim while we opened it: try again
            _write_info(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise
    raise UserError(busy_message(path, label))


def _lock_fd(fd: int, path: Path, label: str) -> bool:
    """Lock `fd`; False when `path` no longer names the file locked (retry), UserError when busy."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(busy_message(path, label)) from None
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            _check_by_pid(path, label)
    else:
        _check_by_pid(path, label)
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
    return same


def _check_by_pid(path: Path, label: str) -> None:
    """No file locks here: a claim is live while its recorded process is (same host only)."""
    info = read_info(path)
    if not info or int(info.get("pid", 0)) == os.getpid():
        return
    if info.get("host") != socket.gethostname() or pid_alive(int(info.get("pid", 0)), info.get("created") or None):
        raise UserError(busy_message(path, label))


def _write_info(fd: int) -> None:
    data = json.dumps(_me()).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def read_info(path: Path) -> dict[str, Any]:
    """What a claim file says about its writer ({} while it is being written or unreadable)."""
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def busy_message(path: Path, label: str) -> str:
    info = {}
    for _ in range(20):  # the holder writes its details right after locking
        info = read_info(path)
        if info:
            break
        time.sleep(0.01)
    who = f"pid {info['pid']}" if info.get("pid") else "another process"
    if info.get("host") and info["host"] != socket.gethostname():
        who += f" on {info['host']}"
    if info.get("since"):
        who += f" since {time.strftime('%H:%M', time.localtime(float(info['since'])))}"
    return f"{label} is being written by another job ({who}); wait for it or choose another --name"


def is_live(path: Path) -> bool:
    """Is claim file `path` held by a live writer (this process included)?"""
    with _lock:
        if any(c.path == path or os.path.abspath(c.path) == os.path.abspath(path) for c in _held.values()):
            return True
    if fcntl is None:
        info = read_info(path)
        return bool(info) and pid_alive(int(info.get("pid", 0)), info.get("created") or None)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        info = read_info(path)
        return bool(info) and pid_alive(int(info.get("pid", 0)), info.get("created") or None)
    finally:
        os.close(fd)
    return False


def remove_stale(path: Path) -> bool:
    """Remove claim file `path` if no live writer holds it; True when removed."""
    if is_live(path):
        return False
    if fcntl is None:
        path.unlink(missing_ok=True)
        return True
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            return False
        if same:
            path.unlink()
        return same
    finally:
        os.close(fd)


def release_all() -> None:
    """Give up every claim this process still holds: a command refused with a UserError must
    leave the lab as it found it, not a claim file for a name it never wrote."""
    with _lock:
        for claim in list(_held.values()):
            release(claim)
