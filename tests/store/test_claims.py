"""Name claims: one writer per object, a dead writer's claim never blocks, claim files stay out of sight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest

from reuse_console.store import claims
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5
from reuse_console.store.lab import Lab

HOLDER = textwrap.dedent(
    """
    import sys, time
    from reuse_console.store.lab import Lab
    lab = Lab(sys.argv[1])
    with lab.claim("checkpoints", "x"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def _holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _write(path: Path, value: int) -> None:
    with atomic_h5(path) as f:
        f.attrs["value"] = value


def test_a_live_claim_refuses_with_the_holders_pid(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    proc = _holder(tmp_path)
    try:
        with pytest.raises(UserError) as err:
            lab.ensure_new("checkpoints", "x")
        msg = str(err.value)
        assert f"checkpoint 'x' is being written by another job (pid {proc.pid} since " in msg
        assert "choose another --name" in msg and "\n" not in msg
        with pytest.raises(UserError, match="being written"), lab.claim("checkpoints", "x"):
            pass
        assert lab.claimed("checkpoints", "x")
        assert lab.cleanup() == []  # a live claim stays
        lab.ensure_new("checkpoints", "y")  # other names are free
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_writers_claim_is_taken_over(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    claim_file = tmp_path / "checkpoints" / ".claim-x"
    assert claim_file.exists()  # left behind by the kill ...
    assert not lab.claimed("checkpoints", "x")  # ... but stale
    path = lab.ensure_new("checkpoints", "x")
    assert f'"pid": {os.getpid()}' in claim_file.read_text()
    _write(path, 1)
    assert not claim_file.exists()  # released when the object landed
    assert [p.name for p in lab.files("checkpoints")] == ["x.h5"]


def test_cleanup_removes_stale_claims_and_listing_ignores_them(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    proc = _holder(tmp_path)
    proc.kill()
    proc.wait()
    _write(lab.path("checkpoints", "a"), 1)
    assert [e.id for e in lab.entries()] == ["a"]
    assert tmp_path / "checkpoints" / ".claim-x" in lab.cleanup()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["a.h5"]


def test_claims_are_reentrant_and_pinned_ones_outlive_writes(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    claim_file = tmp_path / "runs" / ".claim-r"
    with lab.claim("runs", "r", new=True):
        with lab.claim("runs", "r"):
            lab.ensure_new("runs", "r")
        _write(lab.path("runs", "r"), 1)
        _write(lab.path("runs", "r"), 2)  # a pinned claim's later writes replace
        assert claim_file.exists()
    assert not claim_file.exists()
    with h5py.File(lab.path("runs", "r")) as f:
        assert f.attrs["value"] == 2


def test_a_claim_for_a_new_object_refuses_one_that_exists_and_leaves_no_claim(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    with lab.claim("checkpoints", "x", new=True) as path:
        assert path == tmp_path / "checkpoints" / "x.h5"
        _write(path, 1)
    with pytest.raises(UserError) as err, lab.claim("checkpoints", "x", new=True, hint="use --resume x"):
        pytest.fail("the block must not run for an existing object")
    assert str(err.value) == f"checkpoint 'x' already exists in {tmp_path} (use --resume x)"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["x.h5"]  # no claim file left
    with lab.claim("checkpoints", "x") as path:  # without `new`: resume or replace it
        _write(path, 2)
    with h5py.File(lab.path("checkpoints", "x")) as f:
        assert f.attrs["value"] == 2


def test_a_refusal_inside_the_block_gives_the_claim_up(tmp_path: Path) -> None:
    """The console is one long process: bad input found half-way must not keep the name claimed."""
    lab = Lab(tmp_path)
    with pytest.raises(UserError, match="bad input"), lab.claim("plans", "p", new=True):
        raise UserError("bad input")
    assert not lab.claimed("plans", "p")
    assert not (tmp_path / "plans").exists()


def test_a_failed_write_releases_its_claim_and_leaves_nothing(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    path = lab.ensure_new("plans", "p")
    with pytest.raises(RuntimeError), atomic_h5(path):
        raise RuntimeError("boom")
    assert not (tmp_path / "plans").exists()  # the folder the claim made goes too: the lab as it was


def test_a_new_object_never_replaces_one_written_meanwhile(tmp_path: Path) -> None:
    """Second line of defence: a writer that did not claim lands first; ours is refused, theirs kept."""
    lab = Lab(tmp_path)
    path = lab.ensure_new("comparisons", "c")
    with h5py.File(path, "w") as f:  # someone else, without a claim
        f.attrs["value"] = 7
    with pytest.raises(UserError, match="already exists"):
        _write(path, 1)
    with h5py.File(path) as f:
        assert f.attrs["value"] == 7
    assert sorted(p.name for p in (tmp_path / "comparisons").iterdir()) == ["c.h5"]


def test_unique_name_skips_names_another_job_is_writing(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    proc = _holder(tmp_path)
    try:
        assert lab.unique_name("checkpoints", "x") == "x-2"
    finally:
        proc.kill()
        proc.wait()


def test_a_forked_child_does_not_keep_the_claim_alive(tmp_path: Path) -> None:
    """DataLoader workers are forked: after the parent dies, its claim must be free at once."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from reuse_console.store.lab import Lab
        lab = Lab(sys.argv[1])
        with lab.claim("runs", "r"):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            print("held", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        proc.kill()
        proc.wait()
        time.sleep(0.1)
        with Lab(tmp_path).claim("runs", "r"):  # the child still runs, the claim is free
            pass
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_claim_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with Lab(tmp_path).claim("runs", "r"):
            assert (tmp_path / "runs" / ".claim-r").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert claims.held(tmp_path / "runs" / "r.h5") is None
