"""The lab, the commands and the checks of bench/stress.py: what is run, what is resumed, what
"the same result" means (bit for bit, timings aside) and what "every lab file opens" means."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("import", "train", "scan", "grid")
TIME_LIKE = ("seconds", "images_per_s", "time", "memory_mb", "step_rows")
TINY = json.dumps({"base_width": 4})


def cli_argv(lab: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reuse_console.tui.cli", "--lab", str(lab), *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(lab: Path, *args: str, timeout: float = 600) -> float:
    """Run one command to completion (setup and references); raise with its stderr on failure."""
    start = time.perf_counter()
    out = subprocess.run(cli_argv(lab, *args), env=child_env(), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"`reuse-console {' '.join(args)}` exited {out.returncode}: {out.stderr.strip()[-500:]}")
    return time.perf_counter() - start


# -- the lab -----------------------------------------------------------------------------------


def build_lab(work: Path, log: Callable[[str], None]) -> Path:
    """Phantom sources, a small data set, a seg recipient, an ae donor, a scan and a plan."""
    lab = work / "lab"
    log(f"building the phantom lab in {lab}")
    run_cli(
        lab,
        "data",
        "phantom",
        "--subjects",
        "4",
        "--scale",
        "0.3",
        "--no-cine",
        "--out",
        str(work / "ph"),
        "--progress",
        "none",
    )
    run_cli(
        lab,
        "data",
        "phantom",
        "--subjects",
        "10",
        "--scale",
        "0.6",
        "--no-cine",
        "--out",
        str(work / "ph-import"),
        "--progress",
        "none",
    )
    run_cli(
        lab,
        "data",
        "import",
        str(work / "ph"),
        "--name",
        "acdc",
        "--size",
        "32",
        "--val-subjects",
        "1",
        "--progress",
        "none",
    )
    common = [
        "--data",
        "acdc",
        "--arch-config",
        TINY,
        "--epochs",
        "1",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--progress",
        "none",
    ]
    run_cli(lab, "train", *common, "--task", "seg", "--name", "recip")
    run_cli(lab, "train", *common, "--task", "ae", "--name", "donor")
    run_cli(
        lab, "scan", "recip", "donor", "--data", "acdc", "--device", "cpu", "--name", "setup-scan", "--progress", "none"
    )
    run_cli(lab, "plan", "--scan", "setup-scan", "--name", "plan")
    (work / "study.toml").write_text(
        'target = "acdc"\nsubjects = [2]\nseeds = 1\nmodes = ["freeze"]\nreference = "recip"\n'
        "[train]\narch_config = { base_width = 4 }\nepochs = 2\nbatch = 4\naugment = true\n"
        '[[sources]]\nname = "random"\n'
        '[[sources]]\nname = "auto2seg"\ndonor = "donor"\nplan = "plan"\n'
    )
    return lab


# -- the commands under test -----------------------------------------------------------------------


class Command:
    """One command: how to start it, continue it, tell it is done, and compare it with the reference."""

    name = ""

    def __init__(self, lab: Path, work: Path) -> None:
        self.lab, self.work = lab, work

    def start(self, obj: str) -> list[str]:
        raise NotImplementedError

    def resume(self, obj: str) -> list[str] | None:
        """The command continuing `obj`, or None when nothing was written yet (re-run `start`)."""
        return None

    def done(self, obj: str) -> bool:
        raise NotImplementedError

    def compare(self, ref: str, obj: str) -> list[str]:
        raise NotImplementedError

    def next_argv(self, obj: str, fresh: bool) -> list[str]:
        if fresh:
            return self.start(obj)
        return self.resume(obj) or self.start(obj)


class Import(Command):
    name = "import"

    def start(self, obj: str) -> list[str]:
        return [
            "data",
            "import",
            str(self.work / "ph-import"),
            "--name",
            obj,
            "--size",
            "64",
            "--val-subjects",
            "2",
            "--progress",
            "none",
        ]

    def done(self, obj: str) -> bool:
        return (self.lab / "datasets" / f"{obj}.h5").exists()

    def compare(self, ref: str, obj: str) -> list[str]:
        return compare_h5_datasets(self.lab / "datasets" / f"{ref}.h5", self.lab / "datasets" / f"{obj}.h5")


class Train(Command):
    name = "train"

    def start(self, obj: str) -> list[str]:
        return [
            "train",
            "--data",
            "acdc",
            "--arch-config",
            TINY,
            "--epochs",
            "3",
            "--batch",
            "4",
            "--seed",
            "3",
            "--name",
            obj,
            "--device",
            "cpu",
            "--progress",
            "none",
        ]

    def resume(self, obj: str) -> list[str] | None:
        if not (self.lab / "runs" / f"{obj}.h5").exists():
            return None  # killed before the run file existed: nothing written, start again
        return ["train", "--resume", obj, "--device", "cpu", "--progress", "none"]

    def done(self, obj: str) -> bool:
        return run_finished(self.lab, obj)

    def compare(self, ref: str, obj: str) -> list[str]:
        return compare_run(self.lab, ref, obj)


class Scan(Command):
    name = "scan"

    def start(self, obj: str) -> list[str]:
        return [
            "scan",
            "recip",
            "donor",
            "--data",
            "acdc",
            "--alphas",
            "0.5,1",
            "--name",
            obj,
            "--device",
            "cpu",
            "--progress",
            "none",
        ]

    def resume(self, obj: str) -> list[str] | None:
        if not (self.lab / "scans" / f"{obj}.h5.partial").exists():
            return None  # killed before its first progress file: nothing to resume
        return [*self.start(obj), "--resume"]

    def done(self, obj: str) -> bool:
        return (self.lab / "scans" / f"{obj}.h5").exists()

    def compare(self, ref: str, obj: str) -> list[str]:
        return compare_h5_datasets(self.lab / "scans" / f"{ref}.h5", self.lab / "scans" / f"{obj}.h5")


class Grid(Command):
    name = "grid"

    def start(self, obj: str) -> list[str]:
        return ["grid", str(self.work / "study.toml"), "--name", obj, "--device", "cpu", "--progress", "none"]

    def resume(self, obj: str) -> list[str] | None:
        return [*self.start(obj), "--resume"]  # grid --resume also starts a grid nothing was written for

    def done(self, obj: str) -> bool:
        from reuse_console.engine.grids.experiment import read_experiment

        path = self.lab / "experiments" / f"{obj}.h5"
        return path.exists() and read_experiment(path).status == "complete"

    def compare(self, ref: str, obj: str) -> list[str]:
        from reuse_console.engine.grids.experiment import read_experiment

        a = read_experiment(self.lab / "experiments" / f"{ref}.h5")
        b = read_experiment(self.lab / "experiments" / f"{obj}.h5")
        out = []
        if [c.name for c in a.cells] != [c.name for c in b.cells]:
            return [f"experiment {obj}: cells {[c.name for c in b.cells]} != reference {[c.name for c in a.cells]}"]
        for ca, cb in zip(a.cells, b.cells):
            if not np.array_equal(ca.dice, cb.dice, equal_nan=True):
                out.append(f"experiment {obj}: cell {cb.name} Dice differs from the reference")
            out += compare_run(self.lab, f"{ref}.{ca.name}", f"{obj}.{cb.name}")
        if (a.rmse is None) != (b.rmse is None) or (
            a.rmse is not None and not np.array_equal(a.rmse, b.rmse, equal_nan=True)
        ):
            out.append(f"experiment {obj}: RMSE against the reference differs")
        return out


COMMAND_TYPES: dict[str, type[Command]] = {c.name: c for c in (Import, Train, Scan, Grid)}


# -- checks ---------------------------------------------------------------------------------------


def run_finished(lab: Path, run: str) -> bool:
    from reuse_console.store.runs import read_run

    path = lab / "runs" / f"{run}.h5"
    return path.exists() and read_run(path).status == "finished"


def compare_h5_datasets(ref: Path, obj: Path) -> list[str]:
    """Every dataset (array) of two lab files equal, NaN included; attributes (times, names) are not compared."""
    from reuse_console.store.h5 import open_h5

    def arrays(path: Path) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with open_h5(path) as f:
            f.visititems(lambda n, o: out.__setitem__(n, o[()]) if hasattr(o, "shape") else None)
        return out

    a, b = arrays(ref), arrays(obj)
    if a.keys() != b.keys():
        return [f"{obj}: datasets {sorted(b)} != reference {sorted(a)}"]
    bad = [k for k in a if not _equal(a[k], b[k])]
    return [f"{obj}: dataset {k!r} differs from the reference {ref.name}" for k in bad]


def _equal(x: np.ndarray, y: np.ndarray) -> bool:
    x, y = np.asarray(x), np.asarray(y)  # a scalar dataset reads as a Python value (bytes for a string)
    if x.dtype.kind == "f":
        return x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
    return x.shape == y.shape and bool(np.all(x == y))


def compare_run(lab: Path, ref: str, obj: str) -> list[str]:
    """Run status, epoch and step tables (time-like columns skipped), best and last checkpoints bit for bit."""
    import torch

    from reuse_console.store.checkpoints import read_checkpoint, read_extra
    from reuse_console.store.runs import read_run

    out = []
    a, b = read_run(lab / "runs" / f"{ref}.h5"), read_run(lab / "runs" / f"{obj}.h5")
    if b.status != "finished":
        out.append(f"run {obj}: status {b.status!r} after it completed (expected 'finished')")
    for table, ta, tb in (("epochs", a.epochs, b.epochs), ("steps", a.steps, b.steps)):
        for col in ta:
            if col in TIME_LIKE:
                continue
            if col not in tb or not np.array_equal(ta[col], tb[col], equal_nan=True):
                out.append(f"run {obj}: {table} column {col!r} differs from run {ref}")
    for suffix in ("", ".last"):
        sa, ma = read_checkpoint(lab / "checkpoints" / f"{ref}{suffix}.h5")
        sb, mb = read_checkpoint(lab / "checkpoints" / f"{obj}{suffix}.h5")
        oa = read_extra(lab / "checkpoints" / f"{ref}{suffix}.h5", "optimizer") or {}
        ob = read_extra(lab / "checkpoints" / f"{obj}{suffix}.h5", "optimizer") or {}
        for what, xa, xb in (("tensor", sa, sb), ("optimizer tensor", oa, ob)):
            if xa.keys() != xb.keys():
                out.append(f"checkpoint {obj}{suffix}: {what} keys differ from {ref}{suffix}")
                continue
            diff = [k for k in xa if not torch.equal(xa[k], xb[k])]
            if diff:
                out.append(f"checkpoint {obj}{suffix}: {len(diff)} {what}s differ from {ref}{suffix} (e.g. {diff[0]})")
        if ma.epoch != mb.epoch:
            out.append(f"checkpoint {obj}{suffix}: epoch {mb.epoch}, reference {ma.epoch}")
    return out


def check_lab(lab_root: Path) -> tuple[int, list[str]]:
    """Every file in the lab: listed without error and openable, or a temp file listing ignores."""
    from reuse_console.store.h5 import TMP_PREFIX, open_h5
    from reuse_console.store.lab import Lab

    failures: list[str] = []
    try:
        listed = {e.path: e for e in Lab(lab_root).entries()}
    except Exception as exc:  # listing must never fail
        return 0, [f"lab {lab_root}: listing raised {type(exc).__name__}: {exc}"]
    checked = 0
    for path in sorted(p for p in lab_root.rglob("*") if p.is_file()):
        checked += 1
        rel = path.relative_to(lab_root)
        if path.name.startswith(TMP_PREFIX):
            if path in listed:
                failures.append(f"{rel}: temp file shows in the listing")
            continue
        entry = listed.get(path)
        if entry is None and not path.name.endswith(".h5.partial"):
            if path.name.endswith(".h5"):
                failures.append(f"{rel}: an .h5 file the listing does not show")
            continue  # another helper file (claims, locks): not an object, not listed
        if entry is not None and not entry.ok:
            failures.append(f"{rel}: listed with error {entry.error}")
        try:
            with open_h5(path) as f:
                f.attrs.get("kind")
        except Exception as exc:
            failures.append(f"{rel}: does not open ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
    return checked, failures
