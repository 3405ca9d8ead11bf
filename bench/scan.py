"""How much faster is a scan than the naive loop, and how close to the hardware floor?

One run, same models and data, for UNet and PSPNet:
  naive            per variant: copy.deepcopy the recipient, load_state_dict with the swapped tensor,
                   full forward of every validation batch (eval, no_grad, the default memory format),
                   argmax, Dice. Timed on an evenly spread sample of the variants (every variant costs
                   one full forward, so its rate does not depend on which ones).
  naive+cl         the same through engine.evaluate.evaluate_seg (channels_last, inference_mode): shows
                   how much of the gain is the memory format alone.
  engine fp32      engine.scan.evaluate_variants on every variant: batches outside, partial re-execution
                   from cached activations, in-place swaps, freed activations kept in the heap, a conv
                   and its ReLU in one oneDNN call where no norm is between (bit-exact), the
                   reference's Dice bins computed once per batch.
  fp32 folded      engine fp32 with each conv -> batch norm -> ReLU one oneDNN call, the norm folded from
                   the live tensors (engine/swaps/fold.py; not bit-exact, the Dice are compared): the
                   fold's effect in fp32, where it is off by default.
  engine bf16      the same with bf16 autocast and the norms folded (the default in bf16).
  bf16 unfolded    engine bf16 with the norms run apart on bf16-rounded conv outputs: the fold's
                   effect on max |dDice| (the cancellation it removes) and on speed.
  bf16 bf16-head   engine bf16 with the class-score layer in bf16 too (before: engine bf16 computes
                   it in fp32, engine/evaluation/precision.py): the lever's effect on max |dDice|.
  bf16+confirm     engine bf16, then `scan --confirm 0.02 --confirm-at 0.05`: the baseline and the
                   variants whose worst drop lies within 0.02 of 0.05 re-evaluated in fp32 (its time
                   is the bf16 pass plus the re-evaluation; the ratio to engine bf16 is printed).
The naive loops run in fresh processes (the engine tunes malloc process-wide), split in two halves
around the engine runs, so a change of load on a shared machine hits both sides alike.

For each: variants/s, speedup over naive fp32, max |Dice difference| against the naive Dice (mean over
subjects, every class, on the sampled variants), and the floor: the FLOPs the mode cannot avoid
(torch.utils.flop_counter: naive = one full forward per variant; engine = the baseline forward plus
each variant's downstream part) divided by the measured peak of a 2048^3 matmul at that precision,
as a percentage of the measured time (100% = as fast as the hardware allows for those FLOPs).

Models are trained here with the training engine on the synthetic ACDC phantom (128 px; UNet
base width 16, PSPNet width 0.25) and kept in --lab, so a second run skips training.

    .venv/bin/python bench/scan.py [--lab bench-lab] [--archs unet,pspnet] [--naive-variants 12]

With --device cuda everything (training, naive loops, engine) runs on the GPU and the floor is the
GPU's measured matmul peak (fp32 without TF32, as an exact scan runs; bench/scan_floor.py); the
engine rows stack --stack variants per pass (default: the device's, 8 on a GPU, engine/swaps/stacked.py)
and two more rows, fp32 stack=1 and bf16 stack=1, evaluate one variant at a time for comparison.
bench/gpu.sh runs it with the CUDA tests and bench/scan_target.py.

With --models (unet, pspnet, monai-basicunet, smp-unet, monai-dynunet, tv-lraspp, monai-unet3d) it measures instead, on untrained models
and random data, whether each takes the fast path and its speedup over the naive loop
(bench/scan_models.py): no lab, no training.

    .venv/bin/python bench/scan.py --models unet,pspnet,monai-basicunet,smp-unet,monai-unet3d --threads 1
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scan_floor import device_name, peak_flops, scan_flops
from scan_models import MODELS
from scan_models import run as run_models

from reuse_console.engine.core.events import silent
from reuse_console.engine.evaluation.evaluate import evaluate_seg
from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.swaps.confirm import Confirmation, confirm_in_fp32
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.scan_inputs import Loaded, load_inputs
from reuse_console.engine.swaps.stacked import default_stack
from reuse_console.engine.swaps.variants import ScanResult, Variant, plan_variants
from reuse_console.store.lab import Lab

CONFIGS = {"unet": {"base_width": 16}, "pspnet": {"width": 0.25}}


def prepare(lab: Lab, args: argparse.Namespace) -> None:
    """The phantom data set and a seg and an ae model per architecture (skipped when present)."""
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.training.train import TrainSpec, train

    if not lab.exists("datasets", "bench"):
        with tempfile.TemporaryDirectory() as tmp:
            make_phantom(Path(tmp) / "acdc", preset="acdc", subjects=args.subjects, seed=0)
            import_dataset(lab, Path(tmp) / "acdc", fmt="acdc", name="bench", size=128, val_subjects=args.val_subjects)
    for arch in args.archs:
        for task in ("seg", "ae"):
            name = f"bench-{arch}-{task}"
            if lab.exists("checkpoints", name):
                continue
            t0 = time.perf_counter()
            spec = TrainSpec(
                data="bench",
                arch=arch,
                arch_config=CONFIGS[arch],
                task=task,
                epochs=args.epochs,
                batch=16,
                lr=2e-3,
                seed=1 if task == "seg" else 2,
                name=name,
            )
            result = train(lab, spec, device=args.device, precision=args.train_precision)
            print(f"trained {name}: {args.epochs} epochs in {time.perf_counter() - t0:.0f} s, {result.best_metrics}")


def naive_dice(loaded: Loaded, variant: Variant, *, channels_last: bool) -> np.ndarray:
    """Mean Dice per class of one variant, the obvious way (on the loaded model's device)."""
    device = loaded.device
    model = copy.deepcopy(loaded.model).to(memory_format=torch.contiguous_format)
    state = model.state_dict()
    for key in variant.keys:
        state[key] = torch.lerp(state[key], loaded.donor[key].to(state[key]), variant.alpha)  # device and dtype
    model.load_state_dict(state)
    if channels_last:
        result = evaluate_seg(
            model.to(memory_format=torch.channels_last),
            loaded.batches,
            loaded.subjects,
            loaded.classes,
            loaded.present,
            device,
        )
        return result.mean
    acc = DiceAccumulator(len(loaded.classes), len(loaded.subjects))
    model.eval()
    with torch.no_grad():
        for b in loaded.batches:
            acc.update(model(b.images.to(device)).argmax(dim=1), b.labels.to(device), b.subject)
    return acc.per_subject().mean(axis=0)


def naive_part(
    root: str, arch: str, indices: list[int], channels_last: bool, threads: int, device: str = "cpu"
) -> tuple[dict[int, np.ndarray], float, float]:
    """Naive Dice of some variants, run in a child process: (dice by variant, seconds, fp32 peak)."""
    torch.set_num_threads(threads)
    loaded = load_inputs(Lab(root), f"bench-{arch}-seg", f"bench-{arch}-ae", "bench", device=device, batch=32)
    variants = plan_variants(loaded.index.layers, KINDS, (1.0,))
    peak = peak_flops("fp32", loaded.device)
    if loaded.device.type == "cuda":  # CUDA's first calls out of the timing
        naive_dice(loaded, variants[indices[0]], channels_last=channels_last)
    t0 = time.perf_counter()
    dice = {i: naive_dice(loaded, variants[i], channels_last=channels_last) for i in indices}
    return dice, time.perf_counter() - t0, peak


def count_flops(loaded: Loaded, variants: list[Variant]) -> tuple[float, float]:
    """(full forward, engine) FLOPs over the whole validation set (bench/scan_floor.py)."""
    return scan_flops(loaded.model, loaded.batches, variants)


def bench_arch(lab: Lab, arch: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    loaded = load_inputs(lab, f"bench-{arch}-seg", f"bench-{arch}-ae", "bench", device=args.device, batch=32)
    device = loaded.device
    stack = args.stack or default_stack(device)
    variants = plan_variants(loaded.index.layers, KINDS, (1.0,))
    step = max(1, len(variants) // args.naive_variants)
    sample = list(range(0, len(variants), step))[: args.naive_variants]
    slices = sum(int(b.images.shape[0]) for b in loaded.batches)
    print(
        f"{arch} on {device_name(device)}: {len(variants)} variants, {len(loaded.subjects)} val subjects, "
        f"{slices} slices of 128 px (load average {os.getloadavg()[0]:.1f}); naive on {len(sample)} of them; "
        f"{stack} variants per pass"
    )
    flops_naive, flops_engine = count_flops(loaded, variants)
    peaks: dict[str, list[float]] = {"fp32": [], "bf16": []}
    seconds: dict[str, float] = {}
    naive: dict[str, dict[int, np.ndarray]] = {"naive fp32": {}, "naive+cl fp32": {}}
    engine_dice: dict[str, np.ndarray] = {}
    full: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    confirmed = [0]
    engine_used = ""

    def run_naive(label: str, part: list[int]) -> None:
        # in a fresh process: the engine tunes malloc process-wide, the obvious script does not
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            dice, spent, peak = pool.apply(
                naive_part, (str(lab.root), arch, part, label != "naive fp32", args.threads, args.device)
            )
        peaks["fp32"].append(peak)
        naive[label].update(dice)
        seconds[label] = seconds.get(label, 0.0) + spent

    def run_engine(
        precision: str, exact_head: bool = True, fold: bool | None = None, label: str = "", k: int = stack
    ) -> None:
        nonlocal engine_used
        label = label or (f"engine {precision}" if exact_head else f"{precision} bf16-head")
        key = label.removeprefix("engine ")
        peaks[precision].append(peak_flops(precision, device))
        t0 = time.perf_counter()
        base, dice, engine_used = evaluate_variants(
            loaded.model,
            loaded.donor,
            variants,
            loaded.batches,
            classes=loaded.classes,
            present=loaded.present,
            num_subjects=len(loaded.subjects),
            device=device,
            precision=precision,
            exact_head=exact_head,
            fold=fold,
            stack=k,
        )
        seconds[label] = time.perf_counter() - t0
        peaks[precision].append(peak_flops(precision, device))
        engine_dice[key] = dice.mean(axis=1)[sample]
        full[key] = (base, dice)

    def run_confirm() -> None:
        base, dice = full["bf16"]
        result = ScanResult(
            "bench", "r", "d", "bench", loaded.classes, loaded.present, loaded.subjects, base, variants, dice
        )

        def fp32(chosen: list[Variant]) -> tuple[np.ndarray, np.ndarray]:
            out = evaluate_variants(
                loaded.model,
                loaded.donor,
                chosen,
                loaded.batches,
                classes=loaded.classes,
                present=loaded.present,
                num_subjects=len(loaded.subjects),
                device=device,
                precision="fp32",
                stack=stack,
            )
            return out[0], out[1]

        t0 = time.perf_counter()
        confirm_in_fp32(result, variants, Confirmation(0.02, (0.05,)), loaded.present, fp32, silent)
        seconds["bf16+confirm"] = seconds["engine bf16"] + time.perf_counter() - t0
        engine_dice["bf16+confirm"] = result.dice.mean(axis=1)[sample]
        full["bf16+confirm"] = (result.baseline, result.dice)
        confirmed[0] = int(np.sum(result.confirmed))

    # the naive loops are split around the engine runs, so a change of machine load during the
    # benchmark (other processes on a shared box) hits both sides alike
    first, second = sample[::2], sample[1::2]
    run_naive("naive fp32", first)
    run_naive("naive+cl fp32", first)
    if device.type == "cuda":  # CUDA's and cuDNN's first calls (library loads, autotuning) out of the timings
        run_engine("fp32")
        run_engine("bf16")
    run_engine("fp32")
    run_engine("fp32", fold=True, label="fp32 folded")
    run_engine("bf16")
    run_engine("bf16", fold=False, label="bf16 unfolded")
    run_engine("bf16", exact_head=False)
    run_confirm()
    if stack > 1:
        run_engine("fp32", label="fp32 stack=1", k=1)
        run_engine("bf16", label="bf16 stack=1", k=1)
    run_naive("naive+cl fp32", second)
    run_naive("naive fp32", second)
    peaks["fp32"].append(peak_flops("fp32", device))

    reference = np.stack([naive["naive fp32"][i] for i in sample])
    peak = {p: float(np.mean(v)) for p, v in peaks.items()}
    base_rate = len(sample) / seconds["naive fp32"]
    rows: list[dict[str, Any]] = []
    for label in ("naive fp32", "naive+cl fp32"):
        dice = np.stack([naive[label][i] for i in sample])
        rate = len(sample) / seconds[label]
        rows.append(
            {
                "arch": arch,
                "mode": label,
                "variants": len(sample),
                "seconds": seconds[label],
                "rate": rate,
                "speedup": rate / base_rate,
                "ddice": float(np.abs(dice - reference).max()),
                "floor": 100 * flops_naive * len(sample) / peak["fp32"] / seconds[label],
            }
        )
    modes = (
        ("engine fp32", "fp32"),
        ("fp32 folded", "fp32"),
        ("engine bf16", "bf16"),
        ("bf16 unfolded", "bf16"),
        ("bf16 bf16-head", "bf16"),
        ("bf16+confirm", "bf16"),
        *((("fp32 stack=1", "fp32"), ("bf16 stack=1", "bf16")) if stack > 1 else ()),
    )
    for label, precision in modes:
        key = label.removeprefix("engine ")
        rate = len(variants) / seconds[label]
        rows.append(
            {
                "arch": arch,
                "mode": label,
                "variants": len(variants),
                "seconds": seconds[label],
                "rate": rate,
                "speedup": rate / base_rate,
                "ddice": float(np.abs(engine_dice[key] - reference).max()),
                "ddice_all": float(np.abs(full[key][1].mean(axis=1) - full["fp32"][1].mean(axis=1)).max()),
                "floor": 100 * flops_engine / peak[precision] / seconds[label],
                "engine": engine_used,
            }
        )
    print(
        f"  bf16+confirm re-evaluated the baseline and {confirmed[0]} of {len(variants)} variants in fp32: "
        f"{seconds['bf16+confirm'] / seconds['engine bf16']:.2f}x the plain bf16 scan"
    )
    print(
        f"  peak matmul (mean of the runs): fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} "
        f"GFLOP/s; FLOPs per scan: naive {flops_naive * len(variants) / 1e12:.2f} T, engine "
        f"{flops_engine / 1e12:.2f} T ({flops_naive * len(variants) / flops_engine:.2f}x fewer); load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="bench-lab", help="lab kept between runs (data set and trained models)")
    parser.add_argument("--archs", default="unet,pspnet")
    parser.add_argument("--naive-variants", type=int, default=12, help="variants timed on the naive loops")
    parser.add_argument("--subjects", type=int, default=24, help="phantom subjects (training + validation)")
    parser.add_argument("--val-subjects", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-precision", default="bf16", help="precision for training the models (fp32 or bf16)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where training, naive loops and scans run")
    parser.add_argument("--stack", type=int, default=None, help="variants per pass (default: the device's)")
    parser.add_argument("--models", default="", help=f"untrained models to check instead: {','.join(MODELS)}")
    parser.add_argument("--size", type=int, default=64, help="--models: image size in px")
    parser.add_argument("--batches", type=int, default=2, help="--models: validation batches")
    parser.add_argument("--per-batch", type=int, default=4, help="--models: slices per batch")
    args = parser.parse_args()
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        run_models(
            models,
            size=args.size,
            count=args.batches,
            per_batch=args.per_batch,
            naive_variants=args.naive_variants,
            threads=args.threads,
        )
        return
    args.archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    torch.set_num_threads(args.threads)
    lab = Lab(args.lab)
    prepare(lab, args)
    rows: list[dict[str, Any]] = []
    for arch in args.archs:
        rows += bench_arch(lab, arch, args)
    print(
        f"\n{'arch':7} {'mode':14} {'var':>4} {'s':>6} {'var/s':>6} {'speedup':>7} {'|dDice|':>8} {'all':>8} {'floor':>6}"
    )
    for r in rows:
        ddice_all = f"{r['ddice_all']:>8.1e}" if "ddice_all" in r else f"{'':>8}"
        print(
            f"{r['arch']:7} {r['mode']:14} {r['variants']:>4} {r['seconds']:>6.1f} {r['rate']:>6.2f} "
            f"{r.get('speedup', 1.0):>6.1f}x {r['ddice']:>8.1e} {ddice_all} {r['floor']:>5.1f}%"
        )
    print("|dDice|: max against naive fp32 on the sampled variants; all: against engine fp32, every variant")
    unet = {r["mode"]: r for r in rows if r["arch"] == "unet"} or {r["mode"]: r for r in rows}
    fp32, bf16, sure = unet["engine fp32"], unet["engine bf16"], unet["bf16+confirm"]
    print(
        f"scan speedup: fp32 {fp32['speedup']:.1f}x, bf16 {bf16['speedup']:.1f}x; "
        f"max |dDice| fp32 {fp32['ddice']:.2g}, bf16 {max(bf16['ddice'], bf16['ddice_all']):.2g}; "
        f"floor fp32 {fp32['floor']:.0f}%, bf16 {bf16['floor']:.0f}%; "
        f"confirm {sure['seconds'] / bf16['seconds']:.2f}x bf16"
    )


if __name__ == "__main__":
    main()
