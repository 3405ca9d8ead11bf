"""Real processes on one lab at once: a reader beside a writer, two writers, two claims of one name."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from toydata import write_toy  # noqa: E402

from reuse_console.engine.swaps.scan_store import progress_path, read_scan
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab
from reuse_console.store.runs import read_run

CLI = [sys.executable, "-m", "reuse_console.tui.cli"]
EPOCHS, VARIANTS = 40, 40

WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from reuse_console.engine.swaps.variants import ScanResult, Variant
    from reuse_console.engine.swaps.scan_store import progress_path, write_scan
    from reuse_console.store.lab import Lab
    from reuse_console.store.runs import RunWriter

    lab = Lab(sys.argv[1])
    E, V = int(sys.argv[2]), int(sys.argv[3])
    variants = [Variant(str(v), "RM", 1.0, (f"k{v}",), v, (f"m{v}",)) for v in range(V)]
    def scan(done):
        dice = np.full((V, 2, 3), np.nan)
        for v in range(done):
            dice[v] = v / 100.0
        return ScanResult("s", "a", "b", "d", ["bg", "x", "y"], [True] * 3, ["p1", "p2"], np.ones((2, 3)),
                          variants, dice, "fp32", "cpu", "test", 0.0, {})
    with lab.claim("scans", "s", new=True):
        w = RunWriter.create(lab.folder("runs", create=True) / "r.h5", epoch_columns=["val_loss"], meta={"k": 1})
        for e in range(1, E + 1):
            for s in range(3):
                w.append_step(e, (e - 1) * 3 + s, float(e), 1.0)
            w.append_epoch({"val_loss": e * 0.5})
            if e <= V:
                write_scan(progress_path(lab, "s"), scan(e), complete=False)
            time.sleep(0.03)
        w.finish()
        write_scan(lab.path("scans", "s"), scan(V))
        progress_path(lab, "s").unlink()
    """
)


def _missing(exc: Exception) -> bool:
    """The object is not there (yet, or any more): a read that finds nothing, not a torn one."""
    return isinstance(exc, FileNotFoundError) or "errno = 2" in str(exc) or "No such file" in str(exc)


def test_a_reader_polling_while_a_writer_appends_sees_whole_monotone_objects(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(lab.root), str(EPOCHS), str(VARIANTS)], stderr=subprocess.PIPE, text=True
    )
    seen_epochs, seen_done, reads = 0, 0, 0
    finished = False
    while not finished:
        finished = writer.poll() is not None  # one more full round after the writer is gone
        for entry in lab.entries():
            assert entry.ok, f"{entry.kind}/{entry.id}: {entry.error}"
        run_path = lab.path("runs", "r")
        if run_path.exists():
            h = read_run(run_path)
            n = h.n_epochs
            assert n >= seen_epochs, "the epoch count went back"
            seen_epochs = n
            np.testing.assert_array_equal(h.epochs["val_loss"], np.arange(1, n + 1) * 0.5)
            assert h.n_steps >= 3 * n and h.n_steps <= 3 * n + 3  # rows counter never ahead of the rows
            np.testing.assert_array_equal(h.steps["step"], np.arange(h.n_steps))
            reads += 1
        for path in (progress_path(lab, "s"), lab.path("scans", "s")):
            try:
                result = read_scan(path)
            except (OSError, UserError) as exc:
                assert _missing(exc), f"torn read of {path.name}: {exc}"
                continue
            done = ~np.isnan(result.dice).any(axis=(1, 2))
            k = int(done.sum())
            assert done[:k].all() and not done[k:].any()
            np.testing.assert_array_equal(result.dice[:k, 0, 0], np.arange(k) / 100.0)
            assert k >= seen_done, "the scan's finished variants went back"
            seen_done = k
            reads += 1
    assert writer.wait() == 0, writer.stderr.read() if writer.stderr else ""
    assert seen_epochs == EPOCHS and seen_done == VARIANTS
    assert read_run(lab.path("runs", "r")).status == "finished"
    assert reads > 10  # the reader really ran beside the writer
    assert sorted(p.name for p in (lab.root / "scans").iterdir()) == ["s.h5"]


@pytest.fixture
def toy_lab(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "lab")
    write_toy(lab, "toy", n_subjects=3, per_subject=2, size=32)
    return lab


def _train(lab: Lab, name: str) -> subprocess.Popen:
    argv = [
        *CLI,
        "train",
        "--lab",
        str(lab.root),
        "--data",
        "toy",
        "--arch-config",
        '{"base_width": 4}',
        "--epochs",
        "1",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--name",
        name,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _assert_trained(lab: Lab, name: str) -> None:
    from reuse_console.store.checkpoints import read_meta

    h = read_run(lab.path("runs", name))
    assert h.status == "finished" and h.n_epochs == 1
    assert read_meta(lab.path("checkpoints", name)).epoch == 1
    assert read_meta(lab.path("checkpoints", f"{name}.last")).epoch == 1


@pytest.mark.slow
def test_two_jobs_writing_different_objects_both_land(toy_lab: Lab) -> None:
    jobs = [_train(toy_lab, "one"), _train(toy_lab, "two")]
    for job in jobs:
        _, err = job.communicate(timeout=300)
        assert job.returncode == 0, err
    for name in ("one", "two"):
        _assert_trained(toy_lab, name)
    leftovers = [p.name for p in toy_lab.root.rglob(".*")]
    assert leftovers == [], "temp or claim files left behind"


@pytest.mark.slow
def test_two_jobs_asking_for_one_name_one_wins_the_other_gets_one_line(toy_lab: Lab) -> None:
    jobs = [_train(toy_lab, "same"), _train(toy_lab, "same")]
    outcomes = []
    for job in jobs:
        _, err = job.communicate(timeout=300)
        outcomes.append((job.returncode, err))
    codes = sorted(rc for rc, _ in outcomes)
    assert codes == [0, 2], outcomes
    err = next(e for rc, e in outcomes if rc == 2).strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert ("'same' is being written by another job (pid " in err and "choose another --name" in err) or (
        "'same' already exists" in err
    ), err
    _assert_trained(toy_lab, "same")
    assert sorted(p.name for p in (toy_lab.root / "checkpoints").iterdir()) == [
        "same.h5",
        "same.init.h5",
        "same.last.h5",
    ]
