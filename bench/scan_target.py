"""The issue's GPU target: a full scan of UNet-32 (base width 32; each of its 118 (layer, kind)
variants at alpha 1) over 500 slices at 256 px, under 5 s in bf16 and under 20 s in exact fp32 on
an H100 (issue 18, section 3).

Untrained models (seeded; BN statistics and affines randomised so that swaps move Dice) on smooth
random images labelled by the recipient's own prediction: a scan's time does not depend on what the
model learned. Each precision is timed with stacked variants (--stack; default the device's, 8 on a
GPU: engine/swaps/stacked.py) after a warm-up scan (CUDA's library loads and cuDNN's first calls),
and with --loop also one variant at a time (stack 1) on the same data, with the largest Dice
difference between the two (fp32: 0 but for pixels whose scores tie within fp32 rounding) and
bf16's largest difference from fp32. Floor: the baseline pass plus every variant's downstream FLOPs
over the device's measured matmul peak (bench/scan_floor.py).

    python bench/scan_target.py --device cuda --loop                       # the target (bench/gpu.sh)
    .venv/bin/python bench/scan_target.py --device cpu --width 4 --size 32 --slices 8   # a quick check

The last line: `target: UNet-32 ... bf16 N s (< 5 s: yes|no), fp32 exact N s (< 20 s: yes|no)`.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from scan_floor import device_name, peak_flops, scan_flops, sync
from scan_models import randomise_norms
from torch import nn

from reuse_console.engine.core.events import Event, Message
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.models.layers import KINDS, LayerIndex
from reuse_console.engine.models.unet import UNet
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.stacked import default_stack
from reuse_console.engine.swaps.variants import plan_variants

TARGETS = {"bf16": 5.0, "fp32": 20.0}  # seconds for the full UNet-32 scan on an H100
SUBJECTS = 10


def build(width: int, classes: int, seed: int) -> nn.Module:
    """An untrained UNet whose norms have varied statistics and affines (fresh ones are identities)."""
    torch.manual_seed(seed)
    return randomise_norms(UNet(1, classes, base_width=width), seed)


def data(model: nn.Module, device: torch.device, slices: int, size: int, batch: int, classes: int) -> list[EvalBatch]:
    """Smooth random slices labelled by the recipient (an eighth of each label map noise), on the CPU
    as a loaded data set is; SUBJECTS subjects of consecutive slices."""
    g = torch.Generator().manual_seed(7)
    out = []
    for start in range(0, slices, batch):
        n = min(batch, slices - start)
        images = F.avg_pool2d(torch.randn(n, 1, size, size, generator=g), 5, stride=1, padding=2) * 3
        with torch.inference_mode():
            labels = model(images.to(device)).argmax(1).cpu()
        labels = labels.clone()  # an ordinary tensor (inference tensors are read-only outside the mode)
        labels[:, : size // 8] = torch.randint(0, classes, (n, size // 8, size), generator=g)
        subject = torch.tensor([(start + j) * SUBJECTS // slices for j in range(n)])
        out.append(EvalBatch(images, labels, subject))
    return out


def fallbacks(event: Event) -> None:
    """Print the engine's fallbacks (a stacked group sent back to the loop, a full forward)."""
    if isinstance(event, Message) and ("stacked" in event.text or "falling back" in event.text):
        print(f"  engine: {event.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=int, default=32, help="UNet base width")
    parser.add_argument("--size", type=int, default=256, help="slice size in px")
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32, help="slices per forward pass (scan --batch)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--stack", type=int, default=None, help="variants per pass (default: the device's)")
    parser.add_argument("--loop", action="store_true", help="also time one variant at a time (stack 1)")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    stack = args.stack or default_stack(device)
    recipient = build(args.width, args.classes, 1).to(device)
    donor = build(args.width, args.classes, 2).state_dict()
    batches = data(recipient, device, args.slices, args.size, args.batch, args.classes)
    variants = plan_variants(LayerIndex.from_model(recipient, 1).layers, KINDS, (1.0,))
    _, flops = scan_flops(recipient, batches[:1], variants)
    flops *= args.slices / int(batches[0].images.shape[0])
    print(
        f"UNet-{args.width} on {device_name(device)}: {len(variants)} variants, {args.slices} slices of "
        f"{args.size} px in batches of {args.batch}, {stack} variants per pass; scan {flops / 1e12:.1f} TFLOP"
    )
    common = {
        "classes": [f"c{i}" for i in range(args.classes)],
        "present": [True] * args.classes,
        "num_subjects": SUBJECTS,
        "device": device,
        "report": fallbacks,
    }
    seconds: dict[tuple[str, int], float] = {}
    dice: dict[tuple[str, int], np.ndarray] = {}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        peak = peak_flops(precision, device)
        evaluate_variants(recipient, donor, variants[:12], batches[:1], precision=precision, stack=stack, **common)
        for k in (stack, 1) if args.loop and stack > 1 else (stack,):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            t0 = time.perf_counter()
            _, dice[precision, k], engine = evaluate_variants(
                recipient, donor, variants, batches, precision=precision, stack=k, **common
            )
            sync(device)
            seconds[precision, k] = spent = time.perf_counter() - t0
            memory = (
                f", peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else ""
            )
            print(
                f"  {precision} stack={k}: {spent:6.2f} s, {len(variants) / spent:6.1f} variants/s, floor "
                f"{100 * flops / peak / spent:5.1f}% of {peak / 1e12:.1f} TFLOP/s ({engine}{memory})"
            )
        if (precision, 1) in dice and stack > 1:
            diff = float(np.abs(dice[precision, stack] - dice[precision, 1]).max())
            print(f"  {precision}: max |dDice| stacked vs one at a time {diff:.2g} (per subject and class)")
    if ("bf16", stack) in dice and ("fp32", stack) in dice:
        diff = float(np.abs(dice["bf16", stack].mean(axis=1) - dice["fp32", stack].mean(axis=1)).max())
        print(f"  max |dDice| bf16 vs fp32 (mean over subjects): {diff:.2g}")
    parts = []
    for precision, label in (("bf16", "bf16"), ("fp32", "fp32 exact")):
        if (precision, stack) in seconds:
            spent = seconds[precision, stack]
            parts.append(
                f"{label} {spent:.1f} s (< {TARGETS[precision]:g} s: {'yes' if spent < TARGETS[precision] else 'no'})"
            )
    print(
        f"target: UNet-{args.width} scan, {len(variants)} variants x {args.slices} slices at {args.size} px on "
        f"{device_name(device)}: {', '.join(parts)}"
    )


if __name__ == "__main__":
    main()
