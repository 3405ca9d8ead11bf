"""Cell leases: a claim on a cell that stays correct between nodes on a shared (NFS) file system.

The lab's name claims (store/claims.py) rest on `flock`, which the kernel drops when a process
dies. Between nodes that is only as good as the file system's lock service: NFSv4 leases locks to
the client and recovers them after a node dies, NFSv3 needs a working lockd/statd, and some
servers and FUSE mounts drop or fake locks. So a cluster task also holds a lease on its cell,
built only on what every NFS version does atomically on the server:

- taking: `open(O_CREAT | O_EXCL)` of `<kind>/.lease-<cell>`, which exactly one creator wins
  (NFSv3+ implements exclusive create on the server);
- the file says who holds it (host, pid, process start time, a random token) and until when
  (`expires`, Unix seconds); the holder renews it every `lease_s / 4` from a thread, by writing
  a temporary file and renaming it over the lease (rename is atomic on the server);
- breaking: a lease may be taken over when it expired (its holder stopped renewing: dead node,
  SIGKILL, frozen), or at once when its holder ran on this host and that process is gone. The
  breaker renames the lease to a unique name first; only one rename of a file can succeed, so
  two breakers never both win, and then takes it with O_EXCL like anyone else.

It assumes clocks of the nodes agree to well under `lease_s` (NTP), and that a holder that cannot
renew for a whole lease (e.g. a frozen node) has lost its cell: keep `lease_s` far above any pause.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse_console.store.errors import UserError
from reuse_console.store.procs import pid_alive

LEASE_PREFIX = ".lease-"
DEFAULT_LEASE_S = 120.0


@dataclass
class Lease:
    """This process's lease on one cell."""

    path: Path
    token: str
    lease_s: float
    stop: threading.Event
    thread: threading.Thread | None = None


def lease_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{LEASE_PREFIX}{name}"


def _created() -> float:
    with contextlib.suppress(Exception):
        import psutil

        return float(psutil.Process().create_time())
    return 0.0


def _info(token: str, lease_s: float) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "created": _created(),
        "token": token,
        "expires": time.time() + lease_s,
    }


def read_lease(path: Path) -> dict[str, Any]:
    """What a lease file says ({} if absent, being written or unreadable)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def holder_gone(info: dict[str, Any], now: float | None = None) -> bool:
    """May this lease be broken: expired, or held by a process of this host that is gone."""
    if not info:
        return False  # being written (or unreadable): wait, never break blind
    if float(info.get("expires", 0)) < (time.time() if now is None else now):
        return True
    if info.get("host") == socket.gethostname():
        return not pid_alive(int(info.get("pid", 0)), info.get("created") or None)
    return False


def _write_new(path: Path, info: dict[str, Any]) -> bool:
    """Create `path` exclusively with `info`; False when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _break(path: Path) -> None:
    """Move a dead holder's lease aside (one breaker wins the rename) and remove it."""
    aside = path.with_name(f"{path.name}.broken-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(path, aside)
        aside.unlink(missing_ok=True)


def try_take(path: Path, lease_s: float = DEFAULT_LEASE_S) -> Lease | None:
    """Take the lease at `path` now, breaking a dead holder's; None when a live holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    for _ in range(3):
        if _write_new(path, _info(token, lease_s)):
            return Lease(path, token, lease_s, threading.Event())
        info = read_lease(path)
        if not holder_gone(info):
            return None
        _break(path)
    return None


def _renew(lease: Lease) -> None:
    while not lease.stop.wait(lease.lease_s / 4):
        if read_lease(lease.path).get("token") != lease.token:
            return  # broken by someone else (we stalled past the lease): nothing of ours to renew
        tmp = lease.path.with_name(f"{lease.path.name}.tmp-{lease.token}")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(_info(lease.token, lease.lease_s)), encoding="utf-8")
            os.replace(tmp, lease.path)


def release(lease: Lease) -> None:
    """Stop renewing and remove the lease if it is still ours."""
    lease.stop.set()
    if lease.thread is not None:
        lease.thread.join(timeout=5)
    if read_lease(lease.path).get("token") == lease.token:
        lease.path.unlink(missing_ok=True)


@contextlib.contextmanager
def holding_lease(
    path: Path, label: str, *, lease_s: float = DEFAULT_LEASE_S, wait_s: float = 0.0, poll_s: float = 2.0
) -> Iterator[Lease]:
    """Hold the lease at `path` for the block, renewed in the background. Waits up to `wait_s`
    for a live holder (a requeued task whose predecessor's lease has not expired yet), then
    raises UserError naming the holder."""
    deadline = time.monotonic() + wait_s
    while True:
        lease = try_take(path, lease_s)
        if lease is not None:
            break
        if time.monotonic() >= deadline:
            info = read_lease(path)
            who = f"pid {info.get('pid')} on {info.get('host')}" if info else "another task"
            until = time.strftime("%H:%M:%S", time.localtime(float(info.get("expires", 0)))) if info else "?"
            raise UserError(f"{label} is being trained by {who} (lease until {until}); wait for it or cancel it")
        time.sleep(poll_s)
    lease.thread = threading.Thread(target=_renew, args=(lease,), name=f"lease-{path.name}", daemon=True)
    lease.thread.start()
    try:
        yield lease
    finally:
        release(lease)
