"""Atomic writes: a writer killed with SIGKILL mid-write leaves no half object in the lab."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from reuse_console.store.h5 import (
    TMP_PREFIX,
    atomic_h5,
    atomic_path,
    get_json,
    read_strings,
    set_json,
    stamp,
    write_strings,
)
from reuse_console.store.lab import Lab

# Writes a ~64 MB dataset row by row, says when it is half way, then keeps going slowly.
SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from reuse_console.store.h5 import atomic_h5, set_json, stamp
    path = sys.argv[1]
    with atomic_h5(path) as f:
        stamp(f, "dataset")
        set_json(f, "summary", {"version": 2})
        ds = f.create_dataset("x", shape=(64, 1 << 17), dtype="f8")
        for i in range(64):
            ds[i] = np.full(1 << 17, 2.0)
            f.flush()
            if i == 32:
                print("half", flush=True)
            if i >= 32:
                time.sleep(0.5)
    print("done", flush=True)
    """
)


def _write_v1(path: Path) -> None:
    with atomic_h5(path) as f:
        stamp(f, "dataset")
        set_json(f, "summary", {"version": 1})
        f.create_dataset("x", data=np.arange(10.0))


@pytest.mark.parametrize("previous", [True, False], ids=["replacing", "new"])
def test_writer_killed_mid_write_leaves_no_half_object(lab: Lab, previous: bool) -> None:
    path = lab.path("datasets", "scans1")
    path.parent.mkdir(parents=True)
    if previous:
        _write_v1(path)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "half"
        temps = list(path.parent.glob(f"{TMP_PREFIX}*"))
        assert temps == []  # built in memory (atomic_h5): nothing on disk until its image is written
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    entries = lab.entries()
    if previous:
        assert [(e.id, e.summary, e.error) for e in entries] == [("scans1", {"version": 1}, None)]
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(f["x"][()], np.arange(10.0))
    else:
        assert entries == []
        assert not path.exists()

    removed = lab.cleanup()
    assert removed == temps
    assert sorted(p.name for p in path.parent.iterdir()) == (["scans1.h5"] if previous else [])


def test_failed_body_leaves_target_untouched(lab: Lab) -> None:
    path = lab.path("plans", "p1")
    _write_v1(path)
    with pytest.raises(RuntimeError):
        with atomic_h5(path) as f:
            f.create_dataset("x", data=np.zeros(3))
            raise RuntimeError("boom")
    assert sorted(p.name for p in path.parent.iterdir()) == ["p1.h5"]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][()], np.arange(10.0))


def test_atomic_path_replaces_a_plain_file_or_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "side.json"
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(TMP_PREFIX)
        tmp.write_text("one")
        assert not path.exists()  # nothing under the real name until the body is done
    assert path.read_text() == "one"
    with pytest.raises(OSError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert path.read_text() == "one"
    assert [p.name for p in path.parent.iterdir()] == ["side.json"]


def test_stamp_writes_the_attributes_every_file_carries(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    with atomic_h5(path) as f:
        stamp(f, "scan", {"seed": 3})
        set_json(f, "summary", {"layers": [1, 2]})
        write_strings(f, "names", ["RV", "MYO", "Ünïcode"])
    with h5py.File(path, "r") as f:  # plain h5py, as an h5dump user would
        assert f.attrs["schema"] == 1
        assert f.attrs["kind"] == "scan"
        assert f.attrs["created"].endswith("+00:00")
        assert f.attrs["version"]
        prov = json.loads(f.attrs["provenance"])
        assert prov["seed"] == 3 and prov["host"] and "command" in prov
        assert get_json(f, "summary") == {"layers": [1, 2]}
        assert get_json(f, "absent", 7) == 7
        assert read_strings(f["names"]) == ["RV", "MYO", "Ünïcode"]
