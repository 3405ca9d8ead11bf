"""Where does a scan's time go? A per-op profile of an fp32 and a bf16 scan (issue 18 §2).

For UNet and PSPNet from the bench lab (bench/scan.py trains them), an evenly spread, fixed subset
of the variants is scanned with engine.swaps.scan.evaluate_variants under torch.profiler (CPU
activities), after a short warm-up scan (kernels created, malloc tuned). Every op's *self* time
(nested ops counted once) is put in a category by its name (CATEGORIES below); the Dice update and
the class map it counts (`class_map`) are wrapped in a `dice` range, so the ops they run count as
argmax+Dice whatever their name; likewise the check of the traced graph against the model
(PartialForward.verify, once per scan) counts as "trace check". "Python & rest" is the wall time
no op accounts for: the engine's graph walk, swaps, Python around the ops and the profiler's own
overhead.

Printed: one column per arch x precision, each category as a share of that scan's wall time, and
the ops with the most time among "other ops" and the conversions (with the op that called them,
or "in Python": the engine's own casts and copies).

    .venv/bin/python bench/scan_profile.py --lab bench-lab [--variants 10] [--archs unet,pspnet]
"""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.swaps import scan as scan_module
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.scan_inputs import Loaded, load_inputs
from reuse_console.engine.swaps.variants import Variant, plan_variants
from reuse_console.store.lab import Lab

CPU = torch.device("cpu")
DICE = "argmax+Dice"
CHECK = "trace check"
REST = "other ops"
PYTHON = "Python & rest"

# category -> aten op names (without "aten::"); an op not named here counts as "other ops"
CATEGORIES: dict[str, Sequence[str]] = {
    "convolution": (
        "conv2d conv3d convolution _convolution mkldnn_convolution conv_transpose2d conv_transpose3d "
        "convolution_overrideable slow_conv_transpose2d _slow_conv2d_forward _nnpack_spatial_convolution "
        "mkldnn_convolution_transpose mkldnn::_convolution_pointwise"
    ).split(),
    "batch norm": (
        "batch_norm _batch_norm_impl_index native_batch_norm _native_batch_norm_legit "
        "_native_batch_norm_legit_no_training instance_norm group_norm native_group_norm layer_norm"
    ).split(),
    "cat": "cat _cat concat concatenate".split(),
    "elementwise": (
        "relu relu_ clamp_min clamp_min_ threshold add add_ mul mul_ sub div sigmoid tanh leaky_relu gelu silu"
    ).split(),
    "layout/dtype": (
        "to _to_copy copy_ contiguous clone to_mkldnn to_dense _to_dense mkldnn_reorder_conv2d_weight "
        "mkldnn_reorder_conv3d_weight _mkldnn_reshape"
    ).split(),
    "upsampling": (
        "upsample_bilinear2d upsample_nearest2d upsample_bilinear2d_aa _upsample_bilinear2d_aa "
        "upsample_trilinear3d upsample_nearest3d interpolate grid_sampler_2d"
    ).split(),
    "pooling": (
        "max_pool2d max_pool2d_with_indices max_pool3d max_pool3d_with_indices adaptive_avg_pool2d "
        "_adaptive_avg_pool2d avg_pool2d mean"
    ).split(),
    DICE: ("argmax", "max", "bincount", "index_add_"),
}
RANGES = {"dice": DICE, "verify": CHECK}  # profiler ranges put around these calls: all they run counts there
BY_OP = {op: category for category, ops in CATEGORIES.items() for op in ops}
ORDER = [*CATEGORIES, CHECK, REST, PYTHON]


def category(name: str) -> str:
    """The category of an op by its profiler name ("aten::conv2d" -> convolution)."""
    return BY_OP.get(name.removeprefix("aten::"), BY_OP.get(name, REST))


def _range(event: Any) -> str | None:
    """The category of the RANGES range `event` runs in (None: outside them)."""
    parent = event
    while parent is not None:
        if parent.is_user_annotation and parent.name in RANGES:
            return RANGES[parent.name]
        parent = parent.cpu_parent
    return None


def shares(events: Iterable[Any], wall_us: float) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(seconds by category, seconds by op of "other ops", seconds of conversions by caller)."""
    seconds: dict[str, float] = defaultdict(float)
    rest: dict[str, float] = defaultdict(float)
    conversions: dict[str, float] = defaultdict(float)
    spent = 0.0
    for e in events:
        ranged = _range(e)
        if e.is_user_annotation and ranged is None:
            continue  # its self time is Python between ops: left to "Python & rest"
        self_s = e.self_cpu_time_total / 1e6
        spent += self_s
        kind = ranged or category(e.name)
        seconds[kind] += self_s
        if kind == REST:
            rest[e.name.removeprefix("aten::")] += self_s
        elif kind == "layout/dtype":
            caller = e.cpu_parent
            while caller is not None and category(caller.name) == "layout/dtype":
                caller = caller.cpu_parent
            where = f"in {caller.name.removeprefix('aten::')}" if caller is not None else "in Python"
            conversions[f"{e.name.removeprefix('aten::')} {where}"] += self_s
    seconds[PYTHON] = max(0.0, wall_us / 1e6 - spent)
    return seconds, rest, conversions


def _ranged(owner: Any, attribute: str, name: str) -> None:
    """Wrap `owner.attribute` (a class's method or a module's function) in a profiler range called
    `name` (this process only)."""
    inner = getattr(owner, attribute)

    def traced(*args: Any, **kwargs: Any) -> Any:
        with record_function(name):
            return inner(*args, **kwargs)

    setattr(owner, attribute, traced)


def scan(loaded: Loaded, variants: list[Variant], precision: str, batches: list[Any] | None = None) -> None:
    evaluate_variants(
        loaded.model,
        loaded.donor,
        variants,
        batches if batches is not None else loaded.batches,
        classes=loaded.classes,
        present=loaded.present,
        num_subjects=len(loaded.subjects),
        device=CPU,
        precision=precision,
    )


def profile_scan(loaded: Loaded, variants: list[Variant], precision: str) -> dict[str, Any]:
    scan(loaded, variants[:2], precision, loaded.batches[:1])  # warm-up: kernels, malloc
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        scan(loaded, variants, precision)
        wall = time.perf_counter() - t0
    seconds, rest, conversions = shares(prof.events(), wall * 1e6)
    return {"wall": wall, "seconds": seconds, "rest": rest, "conversions": conversions}


def _top(found: dict[str, float], wall: float, n: int = 3) -> str:
    best = sorted(found.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name} {100 * s / wall:.1f}%" for name, s in best) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="bench-lab", help="the bench lab (bench/scan.py makes it)")
    parser.add_argument("--archs", default="unet,pspnet")
    parser.add_argument("--variants", type=int, default=10, help="variants scanned (evenly spread, fixed)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _ranged(DiceAccumulator, "update", "dice")
    _ranged(scan_module, "class_map", "dice")  # the class maps Dice is counted on (as the scan calls it)
    _ranged(PartialForward, "verify", "verify")
    lab = Lab(args.lab)
    columns: dict[str, dict[str, Any]] = {}
    for arch in (a.strip() for a in args.archs.split(",") if a.strip()):
        loaded = load_inputs(lab, f"bench-{arch}-seg", f"bench-{arch}-ae", "bench", device="cpu", batch=32)
        planned = plan_variants(loaded.index.layers, KINDS, (1.0,))
        step = max(1, len(planned) // args.variants)
        variants = planned[::step][: args.variants]
        slices = sum(int(b.images.shape[0]) for b in loaded.batches)
        print(f"{arch}: {len(variants)} of {len(planned)} variants, {slices} slices of 128 px")
        for precision in ("fp32", "bf16"):
            columns[f"{arch} {precision}"] = profile_scan(loaded, variants, precision)
    names = list(columns)
    print(f"\nshare of wall time, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':16}" + "".join(f"{n:>14}" for n in names))
    for kind in ORDER:
        print(
            f"{kind:16}" + "".join(f"{100 * c['seconds'].get(kind, 0.0) / c['wall']:>13.1f}%" for c in columns.values())
        )
    print(f"{'wall seconds':16}" + "".join(f"{c['wall']:>14.1f}" for c in columns.values()))
    print("\nlargest other ops and conversions (op in its caller), % of wall time:")
    for name, c in columns.items():
        line = f"{name}: other {_top(c['rest'], c['wall'])}; conversions {_top(c['conversions'], c['wall'])}"
        print(textwrap.fill(line, 80, subsequent_indent="  "))


if __name__ == "__main__":
    main()
