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

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stress_commands, also when loaded by a test
from stress_commands import (  # noqa: E402
    COMMAND_TYPES,
    COMMANDS,
    Command,
    build_lab,
    check_lab,
    child_env,
    cli_argv,
    run_cli,
)


@dataclass
class Tally:
    """What one command's stress did."""

    kills: int = 0
    mid_write: int = 0  # kills that left a temp file behind: they hit an atomic write
    files: int = 0
    reclaimed: int = 0  # temp files of killed writers removed by Lab.cleanup at the end
    compared: int = 0
    failures: list[str] = field(default_factory=list)


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


def attempt(
    lab: Path, argv: list[str], *, kill_after: float | None, watch: bool, log_file: Path, timeout: float
) -> tuple[bool, int | None]:
    """Start the command; kill it (process group, SIGKILL) after `kill_after` s, or with `watch` at
    the first lab file change after that. Returns (killed, exit code when it ended by itself)."""
    with open(log_file, "w") as err:
        proc = subprocess.Popen(
            cli_argv(lab, *argv), env=child_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
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
        tally.failures.append(
            f"{name}: Lab.cleanup left {len(left - removed)} temp files of killed writers, "
            f"e.g. {sorted(left - removed)[0]}"
        )
    n, bad = check_lab(lab)
    tally.files += n
    tally.failures.extend(f"{name} after cleanup: {b}" for b in bad)


def files_of(lab: Path, obj: str) -> list[str]:
    """The lab files of one round (`obj`, `obj.cell`, temp files), for the verbose log."""
    return sorted(str(p.relative_to(lab)) for p in lab.rglob(f"*{obj}.*") if p.is_file())


def stress_command(
    cmd: Command, kills: int, rng: random.Random, log: Callable[[str], None], verbose: bool = False
) -> Tally:
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
            tally.failures.extend(
                f"{cmd.name} {obj} after kill {tally.kills} ({how}, `{' '.join(argv)}`): {b}" for b in bad
            )
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


def run_stress(
    commands: list[str],
    kills: int,
    seed: int,
    keep: Path | None = None,
    log: Callable[[str], None] = print,
    verbose: bool = False,
) -> dict[str, Tally]:
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
            log(
                f"{name}: {t.kills} kills ({t.mid_write} mid-write), {t.files} files checked, "
                f"{t.compared} results compared, {len(t.failures)} failures"
            )
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
    total = Tally(
        **{
            k: sum(getattr(t, k) for t in tallies.values())
            for k in ("kills", "mid_write", "files", "reclaimed", "compared")
        },
        failures=[f for t in tallies.values() for f in t.failures],
    )
    print(
        f"{'command':8} {'kills':>6} {'mid-write':>10} {'files checked':>14} {'temp reclaimed':>15} "
        f"{'compared':>9} {'failures':>9}"
    )
    for name, t in [*tallies.items(), ("total", total)]:
        print(
            f"{name:8} {t.kills:6d} {t.mid_write:10d} {t.files:14d} {t.reclaimed:15d} {t.compared:9d} "
            f"{len(t.failures):9d}"
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")
    for failure in total.failures:
        print(f"FAIL {failure}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
