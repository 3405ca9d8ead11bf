"""How fast does the lab list 1,000 objects? Target: Lab.entries() under 1 s (10,000: under 2 s,
docs/cluster.md), and the console's first screen (the Checkpoints tab) under 3 s.

Creates 1,000 small objects of mixed kinds (checkpoints, data sets, scans, live-format run
files, jobs) in a temporary lab, then times, in the same run:
  reference   os.listdir of each kind folder + h5py.File open/close of every file (the floor
              for any listing that opens each file)
  uncached    Lab.entries(cached=False): open every file, read `created` and `summary`, decode
              JSON (runs: status too): the listing before the listing index
  first       Lab.entries() with no index yet: the same reads plus writing the index
  entries     Lab.entries() again: one stat per file, attributes from the index
  one file    Lab.entries() after one object was added: the index plus one file read
  console     the console's first page: the Checkpoints tab's rows (tui/screens/lab.py), and the
              console itself started headless until that table is filled (app start-up included)
  cli         `reuse-console ls --json` as a subprocess (includes interpreter start-up)
and prints the times and the ratio to the reference (and of cached to uncached).

    .venv/bin/python bench/lab_listing.py [--objects 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from reuse_console.store.checkpoints import CheckpointMeta, write_checkpoint
from reuse_console.store.h5 import atomic_h5, set_json, stamp
from reuse_console.store.lab import Lab
from reuse_console.store.runs import RunWriter

MIX = ("checkpoints", "datasets", "scans", "runs", "jobs")


def populate(lab: Lab, n: int) -> dict[str, int]:
    """Write `n` small objects, cycling through the kinds in MIX."""
    counts = dict.fromkeys(MIX, 0)
    state = {"conv.weight": torch.randn(4, 1, 3, 3), "bn.running_mean": torch.zeros(4)}
    for i in range(n):
        kind = MIX[i % len(MIX)]
        name = f"{kind[:-1]}-{i:05d}"
        path = lab.path(kind, name)
        if kind == "checkpoints":
            meta = CheckpointMeta(
                arch="unet", arch_config={"base": 4}, task="seg", data="acdc", epoch=i % 7, metrics={"dice_fg": 0.5}
            )
            write_checkpoint(path, state, meta)
        elif kind == "runs":
            w = RunWriter.create(path, epoch_columns=["val_loss"], meta={"arch": "unet", "task": "seg"})
            w.append_step(1, 0, 1.0, 10.0)
            w.finish()
        else:
            with atomic_h5(path) as f:
                stamp(f, kind[:-1])
                set_json(f, "summary", {"n": i, "what": kind})
                f.create_dataset("values", data=np.arange(16, dtype=np.float32))
        counts[kind] += 1
    return counts


def reference(lab: Lab) -> int:
    """The floor: list each folder and open/close every .h5 file."""
    n = 0
    for kind in MIX:
        folder = lab.root / kind
        for name in os.listdir(folder):
            if name.endswith(".h5"):
                h5py.File(folder / name, "r", locking=False).close()
                n += 1
    return n


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def console_first_screen(lab: Lab, rows: int) -> None:
    """Start the console headless (Textual's test driver, 160x48) and wait until the Checkpoints
    table holds every checkpoint: the first screen a user sees, app start-up included."""
    import asyncio

    from reuse_console.tui.app import ConsoleApp, ConsoleConfig

    async def run() -> None:
        app = ConsoleApp(ConsoleConfig(lab=lab, system_stats=False, lab_poll_s=60.0))
        async with app.run_test(size=(160, 48)) as pilot:
            while (
                not app.screen.query("#table-checkpoints")
                or app.screen.query_one("#table-checkpoints").row_count < rows
            ):
                await pilot.pause(0.01)

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab")
        t0 = time.perf_counter()
        counts = populate(lab, args.objects)
        print(f"created {args.objects} objects {counts} in {time.perf_counter() - t0:.1f} s")

        t_ref, n_ref = timed(lambda: reference(lab), args.repeat)
        t_uncached, entries = timed(lambda: lab.entries(cached=False), args.repeat)
        assert len(entries) == n_ref == args.objects and all(e.ok for e in entries)
        t_first, _ = timed(lambda: lab.entries(), 1)
        t_entries, cached = timed(lab.entries, args.repeat)
        assert cached == entries, "the index must give what the files hold"
        extra = {"n": -1, "what": "added"}
        with atomic_h5(lab.path("scans", "scan-added")) as f:
            stamp(f, "scan")
            set_json(f, "summary", extra)
        t_one, _ = timed(lab.entries, 1)
        from reuse_console.tui.screens.lab import first_page

        t_console, page = timed(lambda: first_page(lab), args.repeat)
        assert len(page.rows["checkpoints"]) == counts["checkpoints"]
        t_screen, _ = timed(lambda: console_first_screen(lab, counts["checkpoints"]), 1)
        cli = [sys.executable, "-m", "reuse_console.tui.cli", "ls", "--json", "--lab", str(lab.root)]
        t_cli, _ = timed(lambda: subprocess.run(cli, check=True, capture_output=True), args.repeat)
        t_help, _ = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", "reuse_console.tui.cli", "--help"], check=True, capture_output=True
            ),
            args.repeat,
        )

    print(f"{'':26}{'seconds':>9}{'x reference':>13}{'x uncached':>12}")
    rows = [
        ("reference (open/close)", t_ref),
        ("uncached (every file)", t_uncached),
        ("first (builds index)", t_first),
        ("Lab.entries() (index)", t_entries),
        ("  after adding one", t_one),
        ("console first page", t_console),
        ("  console on screen", t_screen),
        ("ls --json (subprocess)", t_cli),
    ]
    for label, t in rows:
        print(f"{label:26}{t:9.3f}{t / t_ref:13.2f}{t / t_uncached:12.3f}")
    print(f"{'  of which start-up':26}{t_help:9.3f}   (reuse-console --help)")
    target = 1.0 if args.objects <= 1000 else 2.0
    verdict = "OK" if t_entries < target and t_screen < 3.0 else "SLOW"
    print(
        f"target: Lab.entries() for {args.objects} objects under {target:g} s and the console's first page "
        f"under 3 s: {verdict} ({t_entries:.3f} s and {t_screen:.3f} s, median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
