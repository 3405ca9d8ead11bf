"""The lab directory: listing (damage shown, not raised), lookup by id, names, temp files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.h5 import TMP_PREFIX, atomic_h5, set_json, stamp
from reuse_console.store.lab import MAX_SUFFIX, Lab, check_name, next_free_name


def _put(lab: Lab, kind: str, obj_id: str, **summary: object) -> None:
    with atomic_h5(lab.path(kind, obj_id)) as f:
        stamp(f, kind[:-1])
        set_json(f, "summary", summary)


def test_unreadable_file_is_listed_with_its_reason(lab: Lab) -> None:
    _put(lab, "checkpoints", "good", arch="unet")
    lab.path("checkpoints", "x").write_bytes(b"this is not HDF5 at all" * 10)
    lab.path("datasets", "empty").parent.mkdir(parents=True)
    lab.path("datasets", "empty").write_bytes(b"")
    entries = {e.id: e for e in lab.entries()}
    assert set(entries) == {"good", "x", "empty"}
    assert entries["good"].ok and entries["good"].summary == {"arch": "unet"}
    for bad in ("x", "empty"):
        assert not entries[bad].ok
        assert entries[bad].error.startswith("unreadable:") and "signature" in entries[bad].error
    # resolve finds it too (show then reports the error instead of a traceback)
    assert lab.resolve("x").error == entries["x"].error


def test_listing_skips_temp_files_and_other_suffixes(lab: Lab) -> None:
    _put(lab, "scans", "s1")
    folder = lab.folder("scans")
    (folder / f"{TMP_PREFIX}99999-s2.h5").write_bytes(b"half")
    (folder / "notes.txt").write_text("hi")
    assert [e.id for e in lab.entries("scans")] == ["s1"]


def test_entries_of_all_kinds_and_of_one(lab: Lab) -> None:
    _put(lab, "datasets", "acdc")
    _put(lab, "checkpoints", "unet-a")
    _put(lab, "checkpoints", "unet-b")
    assert [(e.kind, e.id) for e in lab.entries()] == [
        ("datasets", "acdc"),
        ("checkpoints", "unet-a"),
        ("checkpoints", "unet-b"),
    ]
    assert [e.id for e in lab.entries("checkpoints")] == ["unet-a", "unet-b"]
    assert Lab(lab.root / "nowhere").entries() == []


def test_resolve_by_id_and_kind_slash_id(lab: Lab) -> None:
    _put(lab, "datasets", "acdc", subjects=20)
    _put(lab, "checkpoints", "unet")
    assert lab.resolve("acdc").summary == {"subjects": 20}
    assert lab.resolve("checkpoints/unet").kind == "checkpoints"
    assert lab.resolve("unet", kind="checkpoints").path == lab.path("checkpoints", "unet")


def test_resolve_errors_say_what_is_wrong(lab: Lab) -> None:
    _put(lab, "datasets", "same")
    _put(lab, "checkpoints", "same")
    with pytest.raises(NotFound, match="no object 'nope'"):
        lab.resolve("nope")
    with pytest.raises(NotFound, match="no dataset 'same2'"):
        lab.resolve("datasets/same2")
    with pytest.raises(
        UserError, match="ambiguous.*checkpoints/same.*datasets/same|ambiguous.*datasets/same.*checkpoints/same"
    ):
        lab.resolve("same")
    assert lab.resolve("datasets/same").kind == "datasets"
    for bad in ("../etc/passwd", "", "a b", "-x", "x.h5", "a" * 101):
        with pytest.raises(UserError, match="invalid name"):
            lab.resolve(bad)
    with pytest.raises(UserError, match="unknown kind"):
        lab.resolve("widgets/x")


def test_names(lab: Lab) -> None:
    assert check_name("unet_acdc-10.s0+bn") == "unet_acdc-10.s0+bn"
    _put(lab, "runs", "r")
    _put(lab, "runs", "r-2")
    assert lab.unique_name("runs", "r") == "r-3"
    assert lab.unique_name("runs", "fresh") == "fresh"
    with pytest.raises(UserError, match="already exists"):
        lab.ensure_new("runs", "r")


def test_derived_names_count_up_from_2_and_skip_what_other_files_use(lab: Lab) -> None:
    asked: list[str] = []

    def take(name: str) -> bool:
        asked.append(name)
        return name == "scan-4"

    assert next_free_name("scan", take) == "scan-4"
    assert asked == ["scan", "scan-2", "scan-3", "scan-4"]
    with pytest.raises(UserError, match=f"'scan-{MAX_SUFFIX}' is taken: choose one with --name"):
        next_free_name("scan", lambda name: False)
    # a name whose side file exists (an unfinished scan's progress file, a run's checkpoint) is skipped
    (lab.folder("scans", create=True) / "s.progress").write_bytes(b"")

    def no_progress_file(name: str) -> bool:
        return not (lab.folder("scans") / f"{name}.progress").exists()

    assert lab.unique_name("scans", "s", free=no_progress_file) == "s-2"


def test_cleanup_keeps_temp_files_of_live_writers(lab: Lab) -> None:
    folder = lab.folder("datasets", create=True)
    live = folder / f"{TMP_PREFIX}{__import__('os').getpid()}-a.h5"
    dead = folder / f"{TMP_PREFIX}999999999-b.h5"
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert lab.cleanup() == [dead]
    assert live.exists()


def test_cli_ls_json_shows_unreadable_entries(lab: Lab) -> None:
    _put(lab, "checkpoints", "good", arch="unet")
    lab.path("checkpoints", "x").write_bytes(b"garbage")
    out = subprocess.run(
        [sys.executable, "-m", "reuse_console.tui.cli", "ls", "--json", "--lab", str(lab.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {r["id"]: r for r in json.loads(out.stdout)}
    assert rows["good"]["error"] is None and rows["good"]["summary"] == {"arch": "unet"}
    assert rows["x"]["error"].startswith("unreadable:")


def test_every_command_tidies_what_killed_writers_left(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """`reuse-console` removes a dead writer's temp file once it has been untouched for 10 minutes
    (a fresher one may belong to a writer on another host sharing the lab) and claims nobody holds."""
    import os
    import time

    from reuse_console.tui.cli import main

    folder = lab.folder("checkpoints", create=True)
    old, fresh = folder / f"{TMP_PREFIX}999999999-old.h5", folder / f"{TMP_PREFIX}999999999-fresh.h5"
    stale_claim = folder / ".claim-gone"
    for path in (old, fresh, stale_claim):
        path.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    with pytest.raises(SystemExit) as done:
        main(["--lab", str(lab.root), "ls"])
    assert done.value.code in (0, None)
    capsys.readouterr()
    assert not old.exists() and fresh.exists() and not stale_claim.exists()


def test_listing_a_file_another_thread_has_open_reads_it(lab: Lab) -> None:
    """The console lists the lab in one thread while another reads a file: listing must open a
    file already open in the process (HDF5 refused that when the two opens' close degrees
    differed, and the healthy file was listed as damaged)."""
    from reuse_console.store.h5 import open_h5
    from reuse_console.store.lab import read_entry

    _put(lab, "checkpoints", "busy")
    path = lab.path("checkpoints", "busy")
    with open_h5(path) as held:
        entry = read_entry("checkpoints", path)
        assert entry.ok, entry.error
        assert held.attrs["kind"]
    with open_h5(path):
        with open_h5(path) as again:  # and open_h5 twice, as two readers do
            assert again.attrs["kind"]
