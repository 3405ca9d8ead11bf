"""The floor of a scan: the FLOPs it cannot avoid and the hardware's measured peak, on CPU or GPU.

Shared by bench/scan.py (trained UNet and PSPNet) and bench/scan_target.py (the GPU target). The
peak is the best of a few square matmuls at the scan's precision: 2048^3 on a CPU, 8192^3 on a GPU
(smaller ones do not fill it), fp32 on CUDA without TF32 (what an exact scan runs, core/device.py
`exact_fp32`), timed with CUDA events after a warm-up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from reuse_console.engine.core.device import exact_fp32
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.variants import Variant

CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a timer read after it counts that work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with its bf16 hardware and any cap on oneDNN's instruction
    set (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 runs the kernels of a CPU without AMX on one with it)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model, flags = "CPU", set[str]()
    for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
        if line.startswith("model name") and model == "CPU":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    bf16 = "AMX" if "amx_bf16" in flags else "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "no bf16 unit"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    capped = f", oneDNN capped at {cap}" if cap else ""
    return f"{model} ({bf16}{capped}, {torch.get_num_threads()} threads)"


def peak_flops(precision: str, device: torch.device = CPU, n: int | None = None, repeat: int = 5) -> float:
    """FLOP/s of the best of `repeat` n x n matmuls at `precision` on `device`."""
    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if precision == "fp16" else torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    with exact_fp32(device, precision):
        torch.mm(a, b)
        sync(device)
        for _ in range(repeat):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.mm(a, b)
                end.record()
                end.synchronize()
                best = min(best, start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                torch.mm(a, b)
                best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _fused_conv_flops(x_shape: list[int], w_shape: list[int], *args: Any, out_shape: list[int], **kwargs: Any) -> int:
    return conv_flop_count(x_shape, w_shape, out_shape)


def counter() -> FlopCounterMode:
    """A FLOP counter that also counts the engine's fused convolutions (engine/swaps/fold.py calls
    oneDNN's `_convolution_pointwise`, which torch's counter does not know)."""
    mapping: dict[Any, Any] = {}
    fused = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    if fused is not None:
        mapping[fused] = _fused_conv_flops  # keyed by the overload packet, as torch's own formulas
    return FlopCounterMode(display=False, custom_mapping=mapping)


def scan_flops(model: nn.Module, batches: Sequence[Any], variants: Sequence[Variant]) -> tuple[float, float]:
    """(one full forward, the engine's scan) FLOPs over all `batches`: the engine runs the baseline
    forward plus each variant's downstream part. Counted on the first batch and scaled by the number
    of slices (FLOPs are linear in the batch size). Downstream parts are counted unfolded: a norm's
    variants need not re-run the conv before it (the folded engine does, to be faster and closer
    to fp32), so those FLOPs are not part of the floor."""
    groups: dict[str, list[str]] = {}
    for v in variants:
        groups.setdefault(v.group, [])
        groups[v.group].extend(k for k in v.keys if k not in groups[v.group])
    per_group = {g: sum(1 for v in variants if v.group == g) for g in groups}
    engine = PartialForward(model, groups, fold=False)
    device = next(model.parameters()).device
    x = batches[0].images.to(device).contiguous(memory_format=torch.channels_last)
    downstream = 0.0

    def visit(name: str, part: Any) -> None:
        nonlocal downstream
        with counter() as flops:
            part.run()
        downstream += flops.get_total_flops() * per_group[name]

    with torch.inference_mode():
        with counter() as flops:
            model(x)
        full = flops.get_total_flops()
        engine.run(x, visit)
    scale = sum(int(b.images.shape[0]) for b in batches) / int(x.shape[0])
    return full * scale, (full + downstream) * scale
