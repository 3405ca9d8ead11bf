"""How fast does the lab list 1,000 objects? Target: Lab.entries() under 1 s (10,000: under 2 s,
docs/cluster.md).

Creates 1,000 small objects of mixed kinds (checkpoints, data sets, scans, live-format run
files, jobs) in a temporary lab, then times, in the same run:
  reference   os.listdir of each kind folder + h5py.File open/close of every file (the floor
              for any listing that opens each file)
  entries     Lab.entries(): open, read `created` and `summary`, decode JSON (runs: status too)
  cli         `reuse-console ls --json` as a subprocess (includes interpreter start-up)
and prints the times and the ratio to the reference.

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
        t_entries, entries = timed(lab.entries, args.repeat)
        assert len(entries) == n_ref == args.objects and all(e.ok for e in entries)
        cli = [sys.executable, "-m", "reuse_console.tui.cli", "ls", "--json", "--lab", str(lab.root)]
        t_cli, _ = timed(lambda: subprocess.run(cli, check=True, capture_output=True), args.repeat)
        t_help, _ = timed(
            lambda: subprocess.run(
                [sys.executable, "-m", "reuse_console.tui.cli", "--help"], check=True, capture_output=True
            ),
            args.repeat,
        )

    print(f"{'':24}{'seconds':>9}{'x reference':>13}")
    print(f"{'reference (open/close)':24}{t_ref:9.3f}{1.0:13.2f}")
    print(f"{'Lab.entries()':24}{t_entries:9.3f}{t_entries / t_ref:13.2f}")
    print(f"{'ls --json (subprocess)':24}{t_cli:9.3f}{t_cli / t_ref:13.2f}")
    print(f"{'  of which start-up':24}{t_help:9.3f}   (reuse-console --help)")
    target = 1.0 if args.objects <= 1000 else 2.0
    verdict = "OK" if t_entries < target else "SLOW"
    print(
        f"target: Lab.entries() for {args.objects} objects under {target:g} s: {verdict} "
        f"({t_entries:.3f} s, median of {args.repeat})"
    )


if __name__ == "__main__":
    main()
