"""Device, precision and CPU threads, chosen in one place.

`auto` picks CUDA, then MPS, then CPU. Precision is fp32 (exact, the default), bf16 or fp16
through autocast; on CPUs with AMX bf16 autocast is several times faster than fp32. Threads:
torch's intra-op pool is set once per process, before any torch work (`use_threads`).

Importing this module does not import torch (torch is imported by the functions that need it),
so the CLI's options and the console's forms read the precisions and the thread default from
here without slowing `--help` or the console's start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from reuse_console.store.errors import UserError

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "fp16"]
PRECISION_NOTES: dict[str, str] = {  # every precision, in the order offered, with what it is for
    "fp32": "exact",
    "bf16": "autocast; fast on AMX CPUs and GPUs",
    "fp16": "autocast; GPU only",
}
PRECISIONS: tuple[str, ...] = tuple(PRECISION_NOTES)
DEFAULT_PRECISION: Precision = "fp32"

CPU_THREADS = 1  # torch threads on a CPU device when --threads is not given (see use_threads)
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by OpenMP/MKL before torch sees --threads
_applied: int | None = None  # what use_threads set in this process (grid workers inherit it)


def pick_device(name: str = "auto") -> torch.device:
    """Resolve `auto`, `cpu`, `cuda`, `cuda:N` or `mps` to an available torch device."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but CUDA is not available here (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UserError("device 'mps' asked for, but MPS is not available here")
    return device


def check_precision(precision: str, device: torch.device) -> Precision:
    """Validate a precision for a device: fp16 autocast is refused on CPU (no fast kernels)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 needs a GPU; on CPU use bf16 (fast with AMX) or fp32")
    return precision  # type: ignore[return-value]


def check_threads(threads: int | None) -> int | None:
    """A thread count the user gave: at least 1 (None: not given)."""
    if threads is not None and (isinstance(threads, bool) or threads < 1):
        raise UserError(f"--threads must be at least 1 (got {threads})")
    return threads


def thread_env(threads: int) -> dict[str, str]:
    """The environment that makes a new process start with `threads` OpenMP/MKL threads, before
    torch (or numpy) has read any option: the variables are read when those libraries load."""
    return {name: str(threads) for name in THREAD_ENV_VARS}


def use_threads(threads: int | None, device: str = "auto") -> int | None:
    """Set torch's CPU threads for this process, before any torch work; returns the count set.

    `threads` None means CPU_THREADS on a CPU device and torch's own default on a GPU (whose
    work does not run on the CPU pool). The count also goes into this process's environment, so
    processes it spawns (grid workers, data loader workers) start with it too. The inter-op pool
    can be sized only before its first use: where that has happened it is left as it is.
    """
    global _applied
    check_threads(threads)
    if threads is None:
        if pick_device(device).type != "cpu":
            return None
        threads = CPU_THREADS
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        with contextlib.suppress(RuntimeError):  # already started (or set) in this process
            torch.set_num_interop_threads(threads)
    os.environ.update(thread_env(threads))
    _applied = threads
    return threads


def applied_threads() -> int | None:
    """The count `use_threads` set in this process (None: it was not called, or left torch's default)."""
    return _applied


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Autocast for bf16/fp16, nothing for fp32."""
    if precision == "fp32":
        yield
        return
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def exact_fp32(device: torch.device, precision: str) -> Iterator[None]:
    """Within the block, fp32 matmuls and convolutions on CUDA round nothing to TF32 (cuDNN's default
    for convolutions keeps 10 mantissa bits of the inputs): what an exact (fp32) scan needs. Nothing
    changes off CUDA or in bf16/fp16; the previous settings are put back after."""
    if device.type != "cuda" or precision != "fp32":
        yield
        return
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def memory_format(device: torch.device, ndim: int = 4) -> torch.memory_format:
    """The layout for a tensor of `ndim` axes: channels_last for (B, C, H, W), channels_last_3d for
    3D blocks (B, C, D, H, W), where convolutions are faster with it (CUDA and CPU oneDNN; measured
    on CPU for MONAI 3D UNets: 1.1-1.6x in eval, 1.7-3.4x in training, docs/performance.md)."""
    import torch

    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def memory_mb(device: torch.device) -> float:
    """Peak device memory in MiB for CUDA, resident memory of this process otherwise."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return 0.0


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global generator."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
