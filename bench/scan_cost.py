"""How does a scan's cost grow? Time, FLOPs and memory over image size, width, slices and variants.

One factor at a time around a base point (128 px, UNet base width 16, 132 validation slices in
batches of 32, every kind at alpha 1): image size 64 / 256, width 8 / 32, 500 slices, one kind (W)
and three alphas (0.25, 0.5, 1). Then the base point again under `--cache-mb` at three bounds (a
half, a quarter and a tenth of the base's measured peak), to show what a bound costs.

Models are untrained (seeded UNets, donor another seed) and the data random (images N(0,1),
labels uniform over 4 classes, 6 subjects): cost does not depend on training. To stay within ~10
minutes on 2 cores every row scans the variants of every fourth layer of the index (`--layer-step`;
all kinds, or alphas, of those layers), evenly spread from the first layer to the head.

Each row runs in a fresh process (a cache row's probe in one more, since the engine keeps freed
memory in the heap), so its memory is its own. Columns: seconds of the scan (evaluate_variants;
for a cache row plus its probe), time per variant, the GFLOPs a scan computes per variant over
all the slices (GF/var: the baseline pass shared by the variants plus the variant's own
downstream part, `down`; torch.utils.flop_counter, as bench/scan.py counts them), the batch, the
activations' peak as the engine's tracker sees it (engine/swaps/scan_memory.py, at that batch) and
the growth of the process's peak RSS during the scan (VmHWM reset through /proc/self/clear_refs
just before it, minus VmRSS then), and the time per variant against the base's. Last: the
least-squares line s/var = a * GF/var + b over the factor rows, with R^2. The time per variant
includes the shared baseline pass, so it is fitted against the FLOPs that include it too.

    .venv/bin/python bench/scan_cost.py [--quick] [--bounds-only] [--precision fp32] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scan import count_flops
from scan_models import cpu_name

from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.models.layers import KINDS, LayerIndex
from reuse_console.engine.models.unet import UNet
from reuse_console.engine.swaps.scan_inputs import Loaded, evaluate_loaded
from reuse_console.engine.swaps.scan_memory import MB, bound_cache, probe_peak, split_batches
from reuse_console.engine.swaps.variants import Variant, plan_variants

CLASSES = 4
SUBJECTS = 6
BATCH = 32


@dataclass(frozen=True)
class Row:
    label: str
    size: int = 128
    width: int = 16
    slices: int = 132
    kinds: tuple[str, ...] = KINDS
    alphas: tuple[float, ...] = (1.0,)
    cache_mb: float | None = None


def rows(quick: bool, bounds_only: bool) -> list[Row]:
    base = Row("base")
    if bounds_only:
        return [base]
    factors = [
        base,
        replace(base, label="size 64", size=64),
        replace(base, label="size 256", size=256),
        replace(base, label="width 8", width=8),
        replace(base, label="width 32", width=32),
        replace(base, label="slices 500", slices=500),
        replace(base, label="one kind (W)", kinds=("W",)),
        replace(base, label="3 alphas", alphas=(0.25, 0.5, 1.0)),
    ]
    if quick:
        return [r for r in factors if r.label not in ("size 256", "width 32", "slices 500")]
    return factors


def loaded_for(row: Row, layer_step: int, precision: str) -> tuple[Loaded, list[Variant]]:
    """An untrained recipient and donor, random labelled slices and the row's variants."""
    torch.manual_seed(0)
    model = UNet(1, CLASSES, base_width=row.width)
    torch.manual_seed(1)
    donor = UNet(1, CLASSES, base_width=row.width).state_dict()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(row.slices, 1, row.size, row.size, generator=g)
    labels = torch.randint(0, CLASSES, (row.slices, row.size, row.size), generator=g)
    subject = torch.arange(row.slices) * SUBJECTS // row.slices
    batches = [
        EvalBatch(images[i : i + BATCH], labels[i : i + BATCH], subject[i : i + BATCH])
        for i in range(0, row.slices, BATCH)
    ]
    index = LayerIndex.from_model(model, 1, size=64)
    layers = index.layers[::layer_step]
    if index.layers[-1] not in layers:
        layers.append(index.layers[-1])
    variants = plan_variants(layers, row.kinds, row.alphas)
    loaded = Loaded(
        model,
        donor,
        index,
        batches,
        [f"s{i}" for i in range(SUBJECTS)],
        [f"c{i}" for i in range(CLASSES)],
        [True] * CLASSES,
        torch.device("cpu"),
        precision,
    )
    return loaded, variants


def _status(field: str) -> float:
    """A VmRSS/VmHWM line of /proc/self/status in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    return float("nan")


def probe(row: Row, layer_step: int, precision: str, threads: int) -> tuple[int, float]:
    """In a child: the batch --cache-mb chooses and the seconds its probe took."""
    torch.set_num_threads(threads)
    loaded, variants = loaded_for(row, layer_step, precision)
    t0 = time.perf_counter()
    _, options = bound_cache(loaded, variants, row.cache_mb or 0.0, (precision,))
    spent = time.perf_counter() - t0
    return options["eval_batch"], spent


def measure(row: Row, layer_step: int, precision: str, threads: int, batch: int) -> dict[str, Any]:
    """In a child: scan time, RSS growth, the tracked peak at `batch` and the downstream FLOPs."""
    torch.set_num_threads(threads)
    loaded, variants = loaded_for(row, layer_step, precision)
    scanned = replace(loaded, batches=split_batches(loaded.batches, batch)) if batch < BATCH else loaded
    rss = _status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    evaluate_loaded(scanned, variants)
    seconds = time.perf_counter() - t0
    grown = _status("VmHWM") - rss
    tracked = probe_peak(scanned, variants, batch, precision) / MB
    full, engine = count_flops(loaded, variants)
    return {
        "variants": len(variants),
        "seconds": seconds,
        "gflops": engine / len(variants) / 1e9,
        "down": (engine - full) / len(variants) / 1e9,
        "tracked": tracked,
        "rss": grown,
        "reset": reset,
    }


def in_child(fn: Any, *args: Any) -> Any:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def fit(x: np.ndarray, y: np.ndarray) -> None:
    """Print the least-squares line y = a x + b and its R^2."""
    a, b = np.polyfit(x, y, 1)
    r2 = 1 - float(np.sum((y - (a * x + b)) ** 2) / np.sum((y - y.mean()) ** 2))
    print(f"fit over the {len(x)} factor rows: s/var = {a:.4f} * GF/var + {b:.4f}; R^2 = {r2:.3f}")
    print(f"  (a slope of {1 / a:.0f} GFLOP/s)" if a > 0 else "  (no positive slope)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="no 256 px, width 32 or 500-slice rows; two bounds")
    parser.add_argument("--bounds-only", action="store_true", help="the base row and the --cache-mb rows only")
    parser.add_argument(
        "--fractions",
        type=lambda text: tuple(float(f) for f in text.split(",")),
        default=(),
        help="the --cache-mb bounds as fractions of the base's peak (default 0.5,0.25,0.1)",
    )
    parser.add_argument("--layer-step", type=int, default=4, help="scan every Nth layer of the index")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    flags = [f for f in ("amx_bf16", "avx512_bf16") if f in open("/proc/cpuinfo").read()]
    print(
        f"CPU: {cpu_name()} ({', '.join(flags) or 'no AMX/AVX512-BF16'}), {args.threads} threads, "
        f"{args.precision}; load average {os.getloadavg()[0]:.1f}"
    )
    t_start = time.perf_counter()
    results: list[tuple[Row, dict[str, Any]]] = []
    for row in rows(args.quick, args.bounds_only):
        out = in_child(measure, row, args.layer_step, args.precision, args.threads, BATCH)
        results.append((row, {**out, "batch": BATCH, "probe": 0.0}))
        print(f"  {row.label}: {out['seconds']:.1f} s", flush=True)
    base = results[0][1]
    fractions = args.fractions or ((0.5, 0.125) if args.quick else (0.5, 0.25, 0.1))
    for fraction in fractions:
        bound = round(base["tracked"] * fraction, 1)
        row = Row(f"--cache-mb {bound:g}", cache_mb=bound)
        batch, spent = in_child(probe, row, args.layer_step, args.precision, args.threads)
        out = in_child(measure, row, args.layer_step, args.precision, args.threads, batch)
        results.append((row, {**out, "batch": batch, "probe": spent, "seconds": out["seconds"] + spent}))
        print(f"  {row.label}: batch {batch}, {out['seconds']:.1f} s + probe {spent:.1f} s", flush=True)

    print(
        f"\n{'row':16}{'vars':>5}{'seconds':>8}{'s/var':>7}{'GF/var':>7}{'down':>6}{'batch':>6}"
        f"{'probe MB':>9}{'RSS MB':>8}{'x base':>7}"
    )
    for row, r in results:
        print(
            f"{row.label:16}{r['variants']:>5}{r['seconds']:>8.1f}{r['seconds'] / r['variants']:>7.3f}"
            f"{r['gflops']:>7.1f}{r['down']:>6.1f}{r['batch']:>6}{r['tracked']:>9.1f}{r['rss']:>8.1f}"
            f"{r['seconds'] / r['variants'] / (base['seconds'] / base['variants']):>6.2f}x"
        )
    factor = [r for row, r in results if row.cache_mb is None]
    if len(factor) >= 3:
        fit(np.array([r["gflops"] for r in factor]), np.array([r["seconds"] / r["variants"] for r in factor]))
    if not all(r["reset"] for _, r in results):
        print("  (VmHWM could not be reset: RSS MB is the peak over the whole child process)")
    print(f"total {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
