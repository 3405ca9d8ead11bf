"""What recalibration (scan --recalibrate N) costs against a plain scan, and what the engine saves
over the naive recalibrated loop, in the same run.

For each model (untrained, from bench/scan_models.py: BN statistics and affines randomised, random
images labelled by the recipient) every (layer, kind) variant is evaluated three ways:
  plain        engine.swaps.scan.evaluate_variants (fast path), no recalibration
  recal        the same with Calibration(N batches, scope all): the model recalibrated once, then
               per variant only the norms downstream of the change re-estimated from cached
               calibration activations
  naive recal  on a sample of variants: deepcopy, swap, recalibrate every norm on the N batches
               (full forwards), evaluate: what a careful user writes
Prints seconds, recal/plain and the engine's speedup over the naive recalibrated loop, with the
largest Dice difference between the two recalibrated paths, and the CPU's name.

    .venv/bin/python bench/recalibration.py [--models unet,pspnet] [--calibration 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from scan_models import CLASSES, CPU, batches, build, cpu_name, variants

from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.models.norm_stats import recalibrate
from reuse_console.engine.swaps.recalibration import Calibration
from reuse_console.engine.swaps.scan import evaluate_variants


def naive_recalibrated(recipient, donor_state, variant, data, calibration) -> np.ndarray:
    model = copy.deepcopy(recipient)
    state = model.state_dict()
    for key in variant.keys:
        state[key] = donor_state[key].clone()
    model.load_state_dict(state)
    recalibrate(model, calibration)
    acc = DiceAccumulator(CLASSES, 2)
    with torch.no_grad():
        for b in data:
            acc.update(model.eval()(b.images).argmax(1), b.labels, b.subject)
    return acc.per_subject().mean(axis=0)


def bench(name: str, *, size: int, count: int, per_batch: int, calibration_batches: int, naive: int) -> dict:
    recipient, donor = build(name, 1), build(name, 2)
    data = batches(recipient, size, count, per_batch)
    g = torch.Generator().manual_seed(5)
    shape = data[0].images.shape
    calibration = [torch.randn(*shape, generator=g) for _ in range(calibration_batches)]
    planned = variants(recipient, size)
    common = dict(classes=[str(c) for c in range(CLASSES)], present=[True] * CLASSES, num_subjects=2, device=CPU)
    t0 = time.perf_counter()
    evaluate_variants(recipient, donor.state_dict(), planned, data, **common)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, dice, engine = evaluate_variants(
        recipient, donor.state_dict(), planned, data, calibration=Calibration(calibration, "all"), **common
    )
    recal = time.perf_counter() - t0
    sample = list(range(0, len(planned), max(1, len(planned) // naive)))[:naive]
    t0 = time.perf_counter()
    reference = {i: naive_recalibrated(recipient, donor.state_dict(), planned[i], data, calibration) for i in sample}
    naive_rate = len(sample) / (time.perf_counter() - t0)
    means = dice.mean(axis=1)
    return {
        "model": name,
        "variants": len(planned),
        "engine": engine,
        "plain": plain,
        "recal": recal,
        "speedup": (len(planned) / recal) / naive_rate,
        "ddice": float(max(np.abs(means[i] - reference[i]).max() for i in sample)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="unet,pspnet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=2, help="validation batches")
    ap.add_argument("--per-batch", type=int, default=4, help="slices per batch")
    ap.add_argument("--calibration", type=int, default=4, help="calibration batches (--recalibrate N)")
    ap.add_argument("--naive-variants", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_name()}, {args.threads} thread(s); {args.batches} validation and {args.calibration} calibration "
        f"batches of {args.per_batch} slices at {args.size} px, fp32, scope all"
    )
    rows = [
        bench(
            m.strip(),
            size=args.size,
            count=args.batches,
            per_batch=args.per_batch,
            calibration_batches=args.calibration,
            naive=args.naive_variants,
        )
        for m in args.models.split(",")
        if m.strip()
    ]
    print(
        f"\n{'model':16} {'variants':>8} {'plain s':>8} {'recal s':>8} {'recal/plain':>11} {'vs naive':>9} {'max|dDice|':>11}"
    )
    for r in rows:
        print(
            f"{r['model']:16} {r['variants']:>8} {r['plain']:>8.2f} {r['recal']:>8.2f} {r['recal'] / r['plain']:>10.2f}x "
            f"{r['speedup']:>8.2f}x {r['ddice']:>11.2e}"
        )


if __name__ == "__main__":
    main()
