"""The listing index: cached listings equal what the files hold, whatever happened to them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py

from reuse_console.store.h5 import atomic_h5, set_json, stamp
from reuse_console.store.lab import Lab
from reuse_console.store.listing_index import index_path
from reuse_console.store.runs import RunWriter

OLD = time.time() - 3600  # an mtime well outside the racy window


def _put(lab: Lab, kind: str, obj_id: str, *, age: bool = True, **summary: object) -> Path:
    path = lab.path(kind, obj_id)
    with atomic_h5(path) as f:
        stamp(f, kind[:-1])
        set_json(f, "summary", summary)
    if age:
        os.utime(path, (OLD, OLD))
    return path


def _by_hand(lab: Lab, kind: str) -> dict[str, dict]:
    """Each file's summary read with plain h5py: the independent answer."""
    out = {}
    for path in sorted(lab.folder(kind).glob("*.h5")):
        if path.name.startswith("."):
            continue
        with h5py.File(path, "r", locking=False) as f:
            out[path.stem] = json.loads(f.attrs["summary"])
    return out


def _listed(lab: Lab, kind: str) -> dict[str, dict]:
    return {e.id: e.summary for e in lab.entries(kind)}


def _indexed(lab: Lab, kind: str) -> set[str]:
    path = index_path(lab.folder(kind), "entries")
    return {name[:-3] for name in json.loads(path.read_text())["files"]} if path.exists() else set()


def test_replaced_added_and_removed_files_are_listed_as_they_are(lab: Lab) -> None:
    for i in range(5):
        _put(lab, "scans", f"s{i}", n=i)
    assert _listed(lab, "scans") == _by_hand(lab, "scans")
    assert _indexed(lab, "scans") == {f"s{i}" for i in range(5)}
    _put(lab, "scans", "s1", n=100)  # replaced (new inode), old mtime on purpose
    _put(lab, "scans", "s5", n=5)
    lab.path("scans", "s3").unlink()
    assert (
        _listed(lab, "scans")
        == _by_hand(lab, "scans")
        == {
            "s0": {"n": 0},
            "s1": {"n": 100},
            "s2": {"n": 2},
            "s4": {"n": 4},
            "s5": {"n": 5},
        }
    )
    assert "s3" not in _indexed(lab, "scans")


def test_a_file_changed_in_place_with_its_mtime_restored_is_read_again(lab: Lab) -> None:
    path = _put(lab, "plans", "p", share=0.25)
    assert _listed(lab, "plans") == {"p": {"share": 0.25}}
    with h5py.File(path, "r+", locking=False) as f:
        f.attrs["summary"] = json.dumps({"share": 0.75})  # same length: same size
    os.utime(path, (OLD, OLD))  # the mtime as before; the ctime still moves
    assert _listed(lab, "plans") == _by_hand(lab, "plans") == {"p": {"share": 0.75}}


def test_just_written_files_and_live_runs_are_not_cached(lab: Lab) -> None:
    _put(lab, "scans", "fresh", age=False, n=1)
    live = RunWriter.create(lab.path("runs", "live"), epoch_columns=["val_loss"], meta={"arch": "unet"})
    try:
        os.utime(lab.path("runs", "live"), (OLD, OLD))
        assert _listed(lab, "scans") == {"fresh": {"n": 1}}
        assert [e.summary["status"] for e in lab.entries("runs")] == ["running"]
        assert _indexed(lab, "scans") == set() and _indexed(lab, "runs") == set()
    finally:
        live.finish()
    os.utime(lab.path("runs", "live"), (OLD, OLD))
    assert [e.summary["status"] for e in lab.entries("runs")] == ["finished"]
    assert _indexed(lab, "runs") == {"live"}


def test_damaged_or_lying_index_is_not_believed(lab: Lab) -> None:
    _put(lab, "scans", "a", n=1)
    index = index_path(lab.folder("scans"), "entries")
    index.write_text("{not json")
    assert _listed(lab, "scans") == {"a": {"n": 1}}
    # an index naming a file that is gone, and one whose stat does not match
    data = json.loads(index.read_text())
    data["files"]["gone.h5"] = [[1, 2, 3, 4], {"created": "", "summary": {"n": 9}, "error": None}]
    data["files"]["a.h5"][0][1] += 1  # another size
    data["files"]["a.h5"][1]["summary"] = {"n": 9}
    index.write_text(json.dumps(data))
    assert _listed(lab, "scans") == {"a": {"n": 1}}


def test_unreadable_files_stay_listed_with_their_reason(lab: Lab) -> None:
    _put(lab, "checkpoints", "good", arch="unet")
    bad = lab.path("checkpoints", "bad")
    bad.write_bytes(b"not hdf5" * 20)
    os.utime(bad, (OLD, OLD))
    for _ in range(2):
        errors = {e.id: e.error for e in lab.entries("checkpoints")}
        assert errors["good"] is None and errors["bad"].startswith("unreadable:")
    assert _indexed(lab, "checkpoints") == {"good"}


def test_a_lab_that_cannot_be_written_is_listed_without_index(lab: Lab) -> None:
    _put(lab, "scans", "a", n=1)
    folder = lab.folder("scans")
    index = index_path(folder, "entries")
    index.mkdir()  # os.replace onto a folder fails, like a read-only mount (root ignores chmod)
    assert _listed(lab, "scans") == {"a": {"n": 1}}
    assert sorted(p.name for p in folder.iterdir()) == sorted(["a.h5", index.name])  # no temp file left


WRITER = """
import os, sys, time
from reuse_console.store.h5 import atomic_h5, set_json, stamp
from reuse_console.store.lab import Lab
lab, tag = Lab(sys.argv[1]), sys.argv[2]
for i in range(25):
    path = lab.path("scans", f"{tag}-{i}")
    with atomic_h5(path) as f:
        stamp(f, "scan")
        set_json(f, "summary", {"tag": tag, "i": i})
    os.utime(path, (time.time() - 3600,) * 2)
    lab.entries("scans")
"""


def test_processes_writing_and_listing_at_once_leave_a_correct_listing(lab: Lab) -> None:
    lab.folder("scans", create=True)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(lab.root), tag]) for tag in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    listed = _listed(lab, "scans")
    assert listed == _by_hand(lab, "scans") and len(listed) == 75
    assert listed == {e.id: e.summary for e in lab.entries("scans", cached=False)}
    assert not [p for p in lab.folder("scans").iterdir() if p.name.startswith(".tmp-")]
