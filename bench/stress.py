"""Kill real `reuse-console` processes at random moments and prove nothing is lost or torn.

    .venv/bin/python bench/stress.py [--kills 20] [--seed 0] [--commands import,train,scan,grid] [--keep DIR]

It builds a tiny phantom lab in a temporary folder (through the CLI), then for each command:

1. runs it once uninterrupted under its own names: the reference, timed (T_ref);
2. starts it again as a real process (one torch thread) and SIGKILLs it, at least `--kills`
   times, with one of two strategies drawn from `random.Random(seed)`:
   - uniform: after a delay drawn over (0, T_ref), so kills land in start-up, mid-work and writes;
   - watch: after such a delay, poll the lab folders and kill the moment a file appears, vanishes
     or is renamed (a `.tmp-*` temp file, a scan's `.h5.partial`, a new run file), so writes
     really get hit;
3. after every kill checks every file of the lab: it is listed by `Lab.entries()` without error
   and opens with h5py (`open_h5`, which also opens a killed writer's SWMR run file), or it is a
   temp file listing ignores (`.tmp-<pid>-name`), or a scan progress file (`*.h5.partial`) that
   must open too;
4. continues the work: `train --resume NAME`, `scan ... --resume`, `grid ... --resume`. When the
   kill came before anything was written there is nothing to resume, so the original command is
   run again (import never resumes: it writes its data set in one atomic step, so it is re-run);
5. when a continued run finishes before the next kill, compares its results with the reference
   exactly (data set arrays; checkpoint tensors and optimizer state bit for bit; run epoch and step
   tables except time-like columns; scan Dice; experiment cell Dice and RMSE) and starts a fresh
   round under a new name;
6. at the end, `Lab.cleanup` must remove every temp file the killed writers left.

Prints kills done (and how many hit an atomic write, leaving a temp file) / files checked / temp files
reclaimed / results compared / failures per command and in total, and
exits 1 when anything failed (each failure line says what and where).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("import", "train", "scan", "grid")
TIME_LIKE = ("seconds", "images_per_s", "time", "memory_mb", "step_rows")
TINY = json.dumps({"base_width": 4})


@dataclass
class Tally:
    """What one command's stress did."""

    kills: int = 0
    mid_write: int = 0  # kills that left a temp file behind: they hit an atomic write
    files: int = 0
    reclaimed: int = 0  # temp files of killed writers removed by Lab.cleanup at the end
    compared: int = 0
    failures: list[str] = field(default_factory=list)


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
    run_cli(lab, "data", "phantom", "--subjects", "4", "--scale", "0.3", "--no-cine", "--out", str(work / "ph"),
            "--progress", "none")
    run_cli(lab, "data", "phantom", "--subjects", "10", "--scale", "0.6", "--no-cine", "--out",
            str(work / "ph-import"), "--progress", "none")
    run_cli(lab, "data", "import", str(work / "ph"), "--name", "acdc", "--size", "32", "--val-subjects", "1",
            "--progress", "none")
    common = ["--data", "acdc", "--arch-config", TINY, "--epochs", "1", "--batch", "4", "--device", "cpu",
              "--progress", "none"]
    run_cli(lab, "train", *common, "--task", "seg", "--name", "recip")
    run_cli(lab, "train", *common, "--task", "ae", "--name", "donor")
    run_cli(lab, "scan", "recip", "donor", "--data", "acdc", "--device", "cpu", "--name", "setup-scan",
            "--progress", "none")
    run_cli(lab, "plan", "--scan", "setup-scan", "--name", "plan")
    (work / "study.toml").write_text(
        'target = "acdc"\nsubjects = [2]\nseeds = 1\nmodes = ["freeze"]\nreference = "recip"\n'
        f'[train]\narch_config = {{ base_width = 4 }}\nepochs = 2\nbatch = 4\naugment = true\n'
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
        return ["data", "import", str(self.work / "ph-import"), "--name", obj, "--size", "64", "--val-subjects", "2",
                "--progress", "none"]

    def done(self, obj: str) -> bool:
        return (self.lab / "datasets" / f"{obj}.h5").exists()

    def compare(self, ref: str, obj: str) -> list[str]:
        return compare_h5_datasets(self.lab / "datasets" / f"{ref}.h5", self.lab / "datasets" / f"{obj}.h5")


class Train(Command):
    name = "train"

    def start(self, obj: str) -> list[str]:
        return ["train", "--data", "acdc", "--arch-config", TINY, "--epochs", "3", "--batch", "4", "--seed", "3",
                "--name", obj, "--device", "cpu", "--progress", "none"]

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
        return ["scan", "recip", "donor", "--data", "acdc", "--alphas", "0.5,1", "--name", obj, "--device", "cpu",
                "--progress", "none"]

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
        from reuse_console.engine.experiment import read_experiment

        path = self.lab / "experiments" / f"{obj}.h5"
        return path.exists() and read_experiment(path).status == "complete"

    def compare(self, ref: str, obj: str) -> list[str]:
        from reuse_console.engine.experiment import read_experiment

        a = read_experiment(self.lab / "experiments" / f"{ref}.h5")
        b = read_experiment(self.lab / "experiments" / f"{obj}.h5")
        out = []
        if [c.name for c in a.cells] != [c.name for c in b.cells]:
            return [f"experiment {obj}: cells {[c.name for c in b.cells]} != reference {[c.name for c in a.cells]}"]
        for ca, cb in zip(a.cells, b.cells):
            if not np.array_equal(ca.dice, cb.dice, equal_nan=True):
                out.append(f"experiment {obj}: cell {cb.name} Dice differs from the reference")
            out += compare_run(self.lab, f"{ref}.{ca.name}", f"{obj}.{cb.name}")
        if (a.rmse is None) != (b.rmse is None) or (a.rmse is not None and not np.array_equal(a.rmse, b.rmse, equal_nan=True)):
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
    from reuse_console.store.lab import open_h5

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
    from reuse_console.store.h5 import TMP_PREFIX
    from reuse_console.store.lab import Lab, open_h5

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


# -- killing ----------------------------------------------------------------------------------------


def _snapshot(lab: Path) -> frozenset[tuple[str, int]]:
    """Names and inode numbers of the lab's object files: any create, rename or delete changes it."""
    out = set()
    for kind in ("datasets", "checkpoints", "runs", "scans", "experiments"):
        try:
            with os.scandir(lab / kind) as it:
                out.update((f"{kind}/{e.name}", e.inode()) for e in it)
        except FileNotFoundError:
            continue
    return frozenset(out)


def attempt(lab: Path, argv: list[str], *, kill_after: float | None, watch: bool, log_file: Path,
            timeout: float) -> tuple[bool, int | None]:
    """Start the command; kill it (process group, SIGKILL) after `kill_after` s, or with `watch` at
    the first lab file change after that. Returns (killed, exit code when it ended by itself)."""
    with open(log_file, "w") as err:
        proc = subprocess.Popen(cli_argv(lab, *argv), env=child_env(), stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    start = time.perf_counter()
    try:
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                if watch:
                    before = _snapshot(lab)
                    while proc.poll() is None and _snapshot(lab) == before:
                        time.sleep(0.001)
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return True, None
        proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - start)))
        return False, proc.returncode
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def temp_files(lab: Path) -> set[Path]:
    from reuse_console.store.h5 import TMP_PREFIX

    return {p for p in lab.rglob(f"{TMP_PREFIX}*") if p.is_file()}


def reclaim(lab: Path, tally: Tally, name: str) -> None:
    """Temp files left by killed writers: `Lab.cleanup` removes them all, and the lab still checks clean."""
    from reuse_console.store.lab import Lab

    left = temp_files(lab)
    removed = set(Lab(lab).cleanup())
    tally.reclaimed += len(removed & left)
    if left - removed:
        tally.failures.append(f"{name}: Lab.cleanup left {len(left - removed)} temp files of killed writers, "
                              f"e.g. {sorted(left - removed)[0]}")
    n, bad = check_lab(lab)
    tally.files += n
    tally.failures.extend(f"{name} after cleanup: {b}" for b in bad)


def files_of(lab: Path, obj: str) -> list[str]:
    """The lab files of one round (`obj`, `obj.cell`, temp files), for the verbose log."""
    return sorted(str(p.relative_to(lab)) for p in lab.rglob(f"*{obj}.*") if p.is_file())


def stress_command(cmd: Command, kills: int, rng: random.Random, log: Callable[[str], None],
                   verbose: bool = False) -> Tally:
    """Reference, then kill/check/continue rounds until `kills` kills happened and the last round finished."""
    tally = Tally()
    ref = f"{cmd.name}-ref"
    t_ref = run_cli(cmd.lab, *cmd.start(ref))
    log(f"{cmd.name}: reference in {t_ref:.1f} s")
    log_file = cmd.work / f"{cmd.name}.stderr"
    timeout = 20 * t_ref + 120
    rnd, fresh, tries = 0, True, 0
    obj = f"{cmd.name}-{rnd}"

    def finished_round(argv: list[str], how: str) -> None:
        """The round's work is done: check the lab and compare with the reference."""
        n, bad = check_lab(cmd.lab)
        tally.files += n
        tally.failures.extend(f"{cmd.name} {obj} ({how}): {b}" for b in bad)
        tally.compared += 1
        tally.failures.extend(f"{cmd.name} {obj} ({how}): {d}" for d in cmd.compare(ref, obj))

    while True:
        tries += 1
        if tries > 8 * kills + 20:
            tally.failures.append(f"{cmd.name} {obj}: gave up after {tries} attempts")
            break
        finishing = tally.kills >= kills
        watch = rng.random() < 0.5
        delay = None if finishing else rng.uniform(0.0, t_ref)
        argv = cmd.next_argv(obj, fresh)
        temps = temp_files(cmd.lab)
        killed, code = attempt(cmd.lab, argv, kill_after=delay, watch=watch, log_file=log_file, timeout=timeout)
        fresh = False
        failed = len(tally.failures)
        how = "ran to the end" if not killed else f"killed ({'watch' if watch else 'timer'} {delay:.2f} s)"
        if verbose:
            shown = " ".join(argv[:3]) + (" --resume" if "--resume" in argv else "")
            log(f"  {cmd.name} {obj}: {shown} ... {how}; lab: {' '.join(files_of(cmd.lab, obj))}")
        round_over = False
        if killed:
            tally.kills += 1
            tally.mid_write += bool(temp_files(cmd.lab) - temps)
            n, bad = check_lab(cmd.lab)
            tally.files += n
            tally.failures.extend(f"{cmd.name} {obj} after kill {tally.kills} ({how}, `{' '.join(argv)}`): {b}"
                                  for b in bad)
            if cmd.done(obj):  # killed after its last write: nothing left to resume
                finished_round(argv, f"done when killed, {how}")
                round_over = True
        elif code != 0:
            tally.failures.append(f"{cmd.name} {obj}: `{' '.join(argv)}` exited {code}: {last_line(log_file)}")
            round_over = True
        elif not cmd.done(obj):
            tally.failures.append(f"{cmd.name} {obj}: `{' '.join(argv)}` exited 0 but the work is not done")
            round_over = True
        else:
            finished_round(argv, f"{' '.join(argv[:2])} ran to the end")
            round_over = True
        if verbose:
            for f in tally.failures[failed:]:
                log(f"  FAIL {f}")
        if round_over:
            if tally.kills >= kills:
                break
            rnd, fresh = rnd + 1, True  # the next round under a new name
            obj = f"{cmd.name}-{rnd}"
    reclaim(cmd.lab, tally, cmd.name)
    return tally


# -- main -----------------------------------------------------------------------------------------


def run_stress(commands: list[str], kills: int, seed: int, keep: Path | None = None,
               log: Callable[[str], None] = print, verbose: bool = False) -> dict[str, Tally]:
    """Build the lab and stress each command; returns a tally per command."""
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="reuse-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        lab = build_lab(work, log)
        rng = random.Random(seed)
        out = {}
        for name in commands:
            try:
                out[name] = stress_command(COMMAND_TYPES[name](lab, work), kills, rng, log, verbose)
            except Exception as exc:  # a reference that fails, a check that crashes: a failure, go on
                out[name] = Tally(failures=[f"{name}: {type(exc).__name__}: {str(exc)[-800:]}"])
            t = out[name]
            log(f"{name}: {t.kills} kills ({t.mid_write} mid-write), {t.files} files checked, "
                f"{t.compared} results compared, {len(t.failures)} failures")
        return out
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs per command (at least)")
    p.add_argument("--seed", type=int, default=0, help="seeds kill moments and strategies")
    p.add_argument("--commands", default=",".join(COMMANDS), help="comma list of " + ", ".join(COMMANDS))
    p.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it (default: a temp dir, removed)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every attempt and the round's files")
    args = p.parse_args(argv)
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    unknown = [c for c in commands if c not in COMMAND_TYPES]
    if unknown:
        p.error(f"unknown command(s) {unknown}: choose from {', '.join(COMMANDS)}")
    start = time.perf_counter()
    tallies = run_stress(commands, args.kills, args.seed, args.keep, verbose=args.verbose)
    print()
    total = Tally(**{k: sum(getattr(t, k) for t in tallies.values())
                     for k in ("kills", "mid_write", "files", "reclaimed", "compared")},
                  failures=[f for t in tallies.values() for f in t.failures])
    print(f"{'command':8} {'kills':>6} {'mid-write':>10} {'files checked':>14} {'temp reclaimed':>15} "
          f"{'compared':>9} {'failures':>9}")
    for name, t in [*tallies.items(), ("total", total)]:
        print(f"{name:8} {t.kills:6d} {t.mid_write:10d} {t.files:14d} {t.reclaimed:15d} {t.compared:9d} "
              f"{len(t.failures):9d}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    for failure in total.failures:
        print(f"FAIL {failure}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
