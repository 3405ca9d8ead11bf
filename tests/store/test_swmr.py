"""A killed run's file opens in HDF5's own tools: the open-for-write mark its SWMR writer left is
cleared, exactly as `h5clear -s` clears it, by the first command that notices, and only once the
writer is known dead. h5ls, h5dump and h5clear (Debian's hdf5-tools) are the independent check."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from toydata import write_toy

from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab
from reuse_console.store.runs import read_run, release_killed_run
from reuse_console.store.swmr import NotClearable, clear_mark, lookup3

TOOLS = ("h5ls", "h5dump", "h5clear")
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS),
    reason="needs h5ls, h5dump and h5clear (Debian: apt-get install hdf5-tools; `make system-deps`)",
)

# Writes two epochs of three steps (no spec, no checkpoint: it cannot be resumed), says so, and
# waits to be killed; with a stop file as argv[2] it finishes cleanly once the file appears.
WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from reuse_console.store.runs import RunWriter
    w = RunWriter.create(sys.argv[1], epoch_columns=["val_loss"], meta={"arch": "unet", "epochs": 9})
    for epoch in (1, 2):
        for step in range(3):
            w.append_step(epoch, step, epoch * 10.0 + step, 50.0)
        w.append_epoch({"val_loss": epoch / 10})
    print("epochs 2", flush=True)
    stop = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    deadline = time.time() + 120
    while time.time() < deadline and not (stop and stop.exists()):
        time.sleep(0.05)
    w.finish("finished")
    """
)


def _start_writer(path: Path, *extra: str) -> subprocess.Popen:
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "epochs 2"
    return proc


def _killed_run(path: Path) -> Path:
    proc = _start_writer(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return path


def _tool(*argv: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(lab: Lab, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "reuse_console.tui.cli", "--lab", str(lab.root), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def _assert_tools_read(path: Path) -> None:
    listing = _tool("h5ls", "-r", path)
    assert listing.returncode == 0, listing.stderr
    assert "*ERROR*" not in listing.stdout, listing.stdout  # every dataset's header decodes
    assert "/epochs" in listing.stdout and "/steps" in listing.stdout
    header = _tool("h5dump", "-H", path)
    assert header.returncode == 0, header.stderr


def test_lookup3_gives_the_reference_values_of_jenkins_lookup3_c() -> None:
    """The driver5 self-test values of Bob Jenkins' lookup3.c (hashlittle)."""
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


# (how the killed file is changed first, the h5clear options that give the same file)
ENDINGS = {
    "as the kill left it": (None, ("-s",)),
    "longer than its superblock says": (b"\x5a" * 5000, ("-s",)),
    "shorter than its superblock says": (-300, ("-s", "--increment=0")),
}


@needs_tools
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_killed_run_is_cleared_byte_for_byte_as_h5clear_clears_it(lab: Lab, tmp_path: Path, ending: str) -> None:
    path = _killed_run(lab.path("runs", "killed"))
    refused = _tool("h5ls", path)
    assert refused.returncode != 0 and "unable to open file" in refused.stdout + refused.stderr
    change, options = ENDINGS[ending]
    if isinstance(change, bytes):
        with open(path, "ab") as fh:
            fh.write(change)
    elif isinstance(change, int):
        os.truncate(path, path.stat().st_size + change)
    theirs = tmp_path / "h5clear.h5"
    shutil.copyfile(path, theirs)
    assert _tool("h5clear", *options, theirs).returncode == 0

    assert release_killed_run(path) is True
    assert path.read_bytes() == theirs.read_bytes()
    assert release_killed_run(path) is False  # nothing left to clear
    if change is None or isinstance(change, bytes):  # a cut file lost real bytes: only equality matters
        _assert_tools_read(path)
        history = read_run(path)
        assert history.status == "lost" and history.n_epochs == 2 and history.n_steps == 6


@needs_tools
def test_tidy_and_listing_never_touch_a_live_writers_file(lab: Lab, tmp_path: Path) -> None:
    path, stop = lab.path("runs", "live"), tmp_path / "stop"
    proc = _start_writer(path, str(stop))
    try:
        before = _sha(path)
        lab.cleanup()
        assert [e.summary["status"] for e in lab.entries("runs")] == ["running"]
        assert release_killed_run(path) is False
        out = _cli(lab, "ls", "--json")  # the real command: its tidy on start, then the listing
        assert out.returncode == 0, out.stderr
        assert [r["summary"]["status"] for r in json.loads(out.stdout)] == ["running"]
        assert _sha(path) == before
        assert _tool("h5ls", path).returncode != 0  # still marked: its writer has it open
    finally:
        stop.touch()
        proc.wait(timeout=60)
    assert proc.returncode == 0
    history = read_run(path)
    assert history.status == "finished" and history.n_steps == 6
    _assert_tools_read(path)  # closed cleanly by its writer, which nothing disturbed


@needs_tools
def test_a_writer_on_another_host_is_never_taken_for_dead(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen from another host sharing the lab, the writer's pid means nothing: the file stays marked."""
    path = _killed_run(lab.path("runs", "remote"))
    before = _sha(path)
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    lab.cleanup()
    assert [e.summary["status"] for e in lab.entries("runs")] == ["running"]
    assert release_killed_run(path) is False
    assert _sha(path) == before
    assert _tool("h5ls", path).returncode != 0


@needs_tools
def test_listing_clears_a_run_it_reads_as_lost(lab: Lab) -> None:
    """The console lists the lab in its own thread, long after its start-up tidy."""
    path = _killed_run(lab.path("runs", "killed"))
    assert _tool("h5ls", path).returncode != 0
    assert [e.summary["status"] for e in lab.entries("runs")] == ["lost"]
    _assert_tools_read(path)
    assert [e.summary["status"] for e in lab.entries("runs")] == ["lost"]


@needs_tools
def test_a_resume_clears_the_mark_even_when_it_then_fails(lab: Lab) -> None:
    from reuse_console.engine.training.train import resume_training

    path = _killed_run(lab.path("runs", "killed"))
    with pytest.raises(UserError, match="cannot be resumed"):
        resume_training(lab, "killed", device="cpu")  # no checkpoint, no spec in its meta
    _assert_tools_read(path)


def _other_superblock_version(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:  # the default format: superblock version 0, no checksum
        f["x"] = [1, 2, 3]


def _bad_checksum(path: Path) -> None:
    _killed_run(path)
    with open(path, "r+b") as fh:
        fh.seek(20)  # inside the superblock extension address, which the checksum covers
        fh.write(b"\x01")


def _far_end(path: Path) -> None:
    """A valid superblock recording an end 2 MiB past the file's (no killed writer leaves one)."""
    _killed_run(path)
    raw = bytearray(path.read_bytes()[:48])
    eof = int.from_bytes(raw[28:36], "little") + (2 << 20)
    raw[28:36] = eof.to_bytes(8, "little")
    raw[44:48] = lookup3(bytes(raw[:44])).to_bytes(4, "little")
    with open(path, "r+b") as fh:
        fh.write(raw)


@pytest.mark.parametrize(
    "make",
    [lambda p: p.write_bytes(b"not HDF5 at all" * 10), _other_superblock_version, _bad_checksum, _far_end],
    ids=["not HDF5", "superblock v0", "bad checksum", "end far past the file"],
)
def test_a_file_that_cannot_be_cleared_is_left_untouched(lab: Lab, make) -> None:
    path = lab.folder("runs", create=True) / "odd.h5"
    make(path)
    before = _sha(path)
    assert release_killed_run(path) is False
    lab.cleanup()
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(NotClearable):
            clear_mark(fd)
    finally:
        os.close(fd)
    assert _sha(path) == before


LIST = textwrap.dedent(
    """
    import json, sys
    from reuse_console.store.lab import Lab
    from reuse_console.store.h5 import open_h5
    from reuse_console.store.errors import DamagedFile
    entries = Lab(sys.argv[1]).entries("runs")
    try:
        open_h5(sys.argv[2])
        opened = "opened"
    except DamagedFile as exc:
        opened = str(exc)
    print(json.dumps({"errors": [e.error for e in entries], "open": opened}))
    """
)


def test_a_damaged_superblock_lists_as_damaged_instead_of_hanging(lab: Lab) -> None:
    """Readers fall back to SWMR read mode only for a valid superblock marked open for writing:
    on a bad checksum SWMR read retries for minutes (the listing hung)."""
    path = lab.folder("runs", create=True) / "odd.h5"
    _bad_checksum(path)
    out = subprocess.run(
        [sys.executable, "-c", LIST, str(lab.root), str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert len(result["errors"]) == 1 and result["errors"][0].startswith("unreadable")
    assert "damaged or truncated" in result["open"]


TRAIN = ["--data", "toy", "--arch-config", '{"base_width": 4}', "--epochs", "2", "--batch", "4", "--seed", "3"]


@needs_tools
@pytest.mark.slow
def test_sigkilled_training_run_opens_in_h5ls_after_the_next_command(lab: Lab) -> None:
    write_toy(lab, n_subjects=3, per_subject=4, size=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "reuse_console.tui.cli", "--lab", str(lab.root), "train", *TRAIN]
    argv += ["--device", "cpu", "--progress", "jsonl", "--name", "killed"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["type"] == "epoch_end":  # the first epoch's row is in the run file
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    path = lab.path("runs", "killed")
    refused = _tool("h5ls", path)
    assert refused.returncode != 0 and "unable to open file" in refused.stdout + refused.stderr

    listing = _cli(lab, "ls", "--json")
    assert listing.returncode == 0, listing.stderr
    runs = [r for r in json.loads(listing.stdout) if r["kind"] == "runs"]
    assert [(r["id"], r["summary"]["status"]) for r in runs] == [("killed", "lost")]
    _assert_tools_read(path)
    shown = _cli(lab, "show", "runs/killed", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "lost"

    resumed = _cli(lab, "train", "--resume", "killed", "--device", "cpu", "--progress", "jsonl")
    assert resumed.returncode == 0, resumed.stderr
    history = read_run(path)
    assert history.status == "finished" and history.n_epochs == 2
    _assert_tools_read(path)
