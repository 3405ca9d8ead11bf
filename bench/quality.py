"""Segmentation quality on the acdc phantom at the demo's budget, and the 10 vs all subjects gap.

Generates the acdc phantom (`--phantom-subjects`, default 30: 24 train / 6 val), imports it at
64 px and 2.5 mm, and trains the seg UNet (base width 8, Adam, augmentation on) twice with the
same seed and epochs: on 10 training subjects (the paper's small setting) and on all of them.
Prints validation Dice per class and the foreground mean for each, the gap, and whether the
full run reaches the target mean foreground Dice >= 0.85. Runs on CPU in a few minutes.

    .venv/bin/python bench/quality.py [--epochs 15] [--threads 1] [--lab DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from reuse_console.engine.data.importer import import_dataset
from reuse_console.engine.data.phantom import make_phantom
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.lab import Lab
from reuse_console.store.runs import read_run

TARGET = 0.85


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom-subjects", type=int, default=30)
    ap.add_argument("--val-subjects", type=int, default=6)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--spacing", type=float, default=2.5)
    ap.add_argument("--base-width", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", type=int, default=10, help="training subjects of the small run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--lab", type=Path, default=None, help="keep the lab here (default: a temp dir)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.lab or Path(tmp) / "lab"
        lab = Lab(root)
        t0 = time.perf_counter()
        make_phantom(Path(tmp) / "acdc", preset="acdc", subjects=args.phantom_subjects, seed=args.seed, cine=False)
        slices = import_dataset(
            lab,
            Path(tmp) / "acdc",
            fmt="acdc",
            name="acdc",
            size=args.size,
            spacing=args.spacing,
            val_subjects=args.val_subjects,
            seed=args.seed,
        )
        n_train = len(slices.subjects_in("train"))
        print(
            f"phantom acdc: {len(slices.subjects)} subjects ({n_train} train, {args.val_subjects} val), "
            f"{len(slices)} slices of {args.size}px at {args.spacing} mm ({time.perf_counter() - t0:.0f} s); "
            f"unet base_width {args.base_width}, {args.epochs} epochs, batch {args.batch}, lr {args.lr}, "
            f"{args.device} {args.precision}, {torch.get_num_threads()} thread(s)",
            flush=True,
        )
        rows = []
        for count in (args.small, None):
            spec = TrainSpec(
                data="acdc",
                arch="unet",
                arch_config={"base_width": args.base_width},
                task="seg",
                subjects=count,
                epochs=args.epochs,
                batch=args.batch,
                lr=args.lr,
                seed=args.seed,
                name=f"q-{count or 'all'}",
            )
            start = time.perf_counter()
            result = train(lab, spec, device=args.device, precision=args.precision)
            seconds = time.perf_counter() - start
            history = read_run(result.run_path)
            best = result.best_metrics
            rows.append((count or n_train, len(history.steps["step"]), seconds, best, result.best_epoch))
            curve = " ".join(f"{v:.2f}" for v in history.epochs["val_dice_fg"])
            reached = [i + 1 for i, v in enumerate(history.epochs["val_dice_fg"]) if v >= TARGET]
            print(
                f"  {count or n_train} subjects: best epoch {result.best_epoch}, dice_fg {best['dice_fg']:.3f}, "
                f"{seconds:.0f} s; first epoch >= {TARGET}: {reached[0] if reached else '-'}; val dice_fg per "
                f"epoch: {curve}",
                flush=True,
            )
    print()
    print(
        f"{'subjects':>8s} {'steps':>6s} {'seconds':>8s} {'best ep':>7s} {'RV':>6s} {'MYO':>6s} {'LV':>6s} {'fg mean':>8s}"
    )
    for count, steps, seconds, best, epoch in rows:
        d = best["dice"]
        print(
            f"{count:8d} {steps:6d} {seconds:8.0f} {epoch:7d} {d['RV']:6.3f} {d['MYO']:6.3f} {d['LV']:6.3f} "
            f"{best['dice_fg']:8.3f}"
        )
    gap = rows[1][3]["dice_fg"] - rows[0][3]["dice_fg"]
    full = rows[1][3]["dice_fg"]
    print(f"\ngap (all - {args.small} subjects) in mean foreground Dice: {gap:+.3f}")
    print(
        f"target mean foreground Dice >= {TARGET} with all subjects: {'met' if full >= TARGET else 'NOT met'} "
        f"({full:.3f})"
    )


if __name__ == "__main__":
    main()
