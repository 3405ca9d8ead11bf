"""Live run files: read while another process appends, and resumed after the writer is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from reuse_console.store.errors import UserError
from reuse_console.store.inspect import describe
from reuse_console.store.lab import Lab
from reuse_console.store.runs import RunWriter, read_run

COLUMNS = ["val_loss", "dice/RV"]

# Appends step rows (loss = 0.5 * global step) until a stop file appears, then finishes.
APPENDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from reuse_console.store.runs import RunWriter
    path, stop = Path(sys.argv[1]), Path(sys.argv[2])
    w = RunWriter.create(path, epoch_columns=["val_loss", "dice/RV"], meta={"arch": "unet", "epochs": 99})
    print("ready", flush=True)
    n = 0
    deadline = time.time() + 60
    while not stop.exists() and time.time() < deadline:
        w.append_step(n // 10 + 1, n % 10, 0.5 * n, 100.0 + n)
        n += 1
        if n % 10 == 0:
            w.append_epoch({"val_loss": n / 10, "dice/RV": 1 / n})
        time.sleep(0.02)
    w.finish("finished")
    print(n, flush=True)
    """
)

# Writes 3 full epochs of 4 steps, then steps of epoch 4 until it is killed.
KILLED = textwrap.dedent(
    """
    import sys, time
    from reuse_console.store.runs import RunWriter
    w = RunWriter.create(sys.argv[1], epoch_columns=["val_loss", "dice/RV"], meta={"arch": "unet", "lr": 0.01})
    for epoch in range(1, 4):
        for step in range(4):
            w.append_step(epoch, step, epoch * 10 + step, 50.0)
        w.append_epoch({"val_loss": epoch / 10, "dice/RV": epoch / 4})
    w.append_step(4, 0, 40.0, 50.0)
    print("epochs 3", flush=True)
    while True:
        time.sleep(1)
    """
)


def _check_rows(steps: dict[str, np.ndarray]) -> None:
    """Every visible row is complete: its values match the formula the writer used."""
    n = np.arange(len(steps["loss"]))
    np.testing.assert_array_equal(steps["loss"], 0.5 * n)
    np.testing.assert_array_equal(steps["images_per_s"], 100.0 + n)
    np.testing.assert_array_equal(steps["epoch"], n // 10 + 1)


def test_reader_sees_rows_grow_while_writer_runs(lab: Lab, tmp_path: Path) -> None:
    path = lab.path("runs", "live")
    stop = tmp_path / "stop"
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        seen: list[int] = []
        deadline = time.time() + 60
        while len(set(seen)) < 4 and time.time() < deadline:
            history = read_run(path)
            assert proc.poll() is None, "the writer must still be alive while we read"
            assert history.status == "running"
            _check_rows(history.steps)
            n_epochs = len(history.epochs["val_loss"])
            np.testing.assert_array_equal(history.epochs["val_loss"], np.arange(1, n_epochs + 1))
            (entry,) = lab.entries("runs")  # the listing reads the live file too
            assert entry.ok and entry.summary["status"] == "running"
            seen.append(history.n_steps)
            time.sleep(0.05)
        assert seen == sorted(seen) and len(set(seen)) >= 4, seen
        stop.touch()
        total = int(proc.stdout.readline())
    finally:
        stop.touch()
        proc.wait(timeout=30)
    final = read_run(path)
    assert final.status == "finished" and final.n_steps == total > max(seen)
    _check_rows(final.steps)
    assert final.meta == {"arch": "unet", "epochs": 99}
    with h5py.File(path, "r") as f:  # closed cleanly: opens without SWMR, like any lab file
        assert f["steps"].shape == (total,)


def test_resume_after_writer_killed(lab: Lab) -> None:
    path = lab.path("runs", "crashed")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "epochs 3"
        with pytest.raises(UserError, match="still being written"):
            RunWriter.resume(path, keep_epochs=2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    with pytest.raises(OSError):  # HDF5 refuses a normal open of a killed SWMR writer's file
        h5py.File(path, "r")
    dead = read_run(path)
    assert dead.status == "lost"
    assert dead.n_steps == 13 and dead.n_epochs == 3
    np.testing.assert_array_equal(dead.epochs["dice/RV"], [0.25, 0.5, 0.75])
    (entry,) = lab.entries("runs")
    assert entry.summary["status"] == "lost" and entry.summary["epochs_done"] == 3
    assert {d["path"] for d in describe(path)["datasets"]} == {"/steps", "/epochs", "/rows", "/status"}  # `show`

    with pytest.raises(UserError, match="has 3 finished epochs"):
        RunWriter.resume(path, keep_epochs=4)
    writer = RunWriter.resume(path, keep_epochs=2)
    assert (writer.n_steps, writer.n_epochs) == (8, 2)
    mid = read_run(path)
    assert mid.status == "running"
    np.testing.assert_array_equal(mid.steps["loss"], [10, 11, 12, 13, 20, 21, 22, 23])
    np.testing.assert_array_equal(mid.epochs["val_loss"], [0.1, 0.2])
    for step in range(4):
        writer.append_step(3, step, 300.0 + step, 60.0)
    writer.append_epoch({"val_loss": 0.03, "dice/RV": 0.9})
    writer.finish("finished")

    done = read_run(path)
    assert done.status == "finished"
    assert done.meta == {"arch": "unet", "lr": 0.01}
    np.testing.assert_array_equal(done.steps["loss"], [10, 11, 12, 13, 20, 21, 22, 23, 300, 301, 302, 303])
    np.testing.assert_array_equal(done.steps["epoch"], [1] * 4 + [2] * 4 + [3] * 4)
    np.testing.assert_array_equal(done.epochs["val_loss"], [0.1, 0.2, 0.03])
    assert sorted(p.name for p in path.parent.iterdir()) == ["crashed.h5"]  # no temp file left


def test_statuses_and_bad_input(lab: Lab) -> None:
    path = lab.path("runs", "r")
    with RunWriter.create(path, epoch_columns=COLUMNS, meta={"task": "seg"}) as w:
        w.append_step(1, 0, 1.0, 1.0)
        with pytest.raises(ValueError, match="missing"):
            w.append_epoch({"val_loss": 1.0})
        with pytest.raises(ValueError, match="status"):
            w.finish("exploded")
    assert read_run(path).status == "finished"
    with pytest.raises(UserError, match="already exists"):
        RunWriter.create(path, epoch_columns=COLUMNS, meta={})
    with pytest.raises(ValueError, match="reserved"):
        RunWriter.create(lab.path("runs", "t"), epoch_columns=["time"], meta={})

    with pytest.raises(RuntimeError):
        with RunWriter.create(path, epoch_columns=COLUMNS, meta={}, overwrite=True):
            raise RuntimeError("training crashed")
    assert read_run(path).status == "failed"
    w = RunWriter.create(path, epoch_columns=COLUMNS, meta={}, overwrite=True)
    w.finish("cancelled")
    assert read_run(path).status == "cancelled"
    assert read_run(path).n_steps == 0

    lab.path("runs", "junk").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"cannot read lab file .*junk\.h5.*damaged or truncated"):
        read_run(lab.path("runs", "junk"))


def test_a_resumed_run_lists_the_same_summary_as_when_it_started(lab: Lab) -> None:
    """Listings show a run's first scalar meta fields; a resume (which rebuilds the file from the
    stored, key-sorted meta) must not show others."""
    path = lab.path("runs", "again")
    meta = {f"k{25 - i:02d}": i for i in range(14)}  # more fields than a summary keeps, not in key order
    writer = RunWriter.create(path, epoch_columns=["val_loss"], meta=meta)
    writer.append_epoch({"val_loss": 0.5})
    writer.close()  # as if killed
    (started,) = lab.entries("runs")
    RunWriter.resume(path, keep_epochs=1).finish("finished")
    (resumed,) = lab.entries("runs")
    fields = {k: v for k, v in started.summary.items() if k not in ("status", "epochs_done")}
    assert set(fields) == {"kind", *list(meta)[:9]}  # the first fields as the run gave them
    assert {k: v for k, v in resumed.summary.items() if k not in ("status", "epochs_done")} == fields
