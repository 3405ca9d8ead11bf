"""One line about the machine for the job view: GPU use (nvidia-ml-py) or CPU and RAM (psutil)."""

from __future__ import annotations

import contextlib
from types import ModuleType

_nvml: ModuleType | None = None
_nvml_tried = False


def _gpu() -> ModuleType | None:
    """The initialised pynvml module, or None (not installed, no driver, no GPU)."""
    global _nvml, _nvml_tried
    if not _nvml_tried:
        _nvml_tried = True
        with contextlib.suppress(Exception):
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() > 0:
                _nvml = pynvml
    return _nvml


def system_line() -> str:
    """`GPU0 87% 3.1/80.0 GiB` per GPU, else `CPU 45% (16 cores)  RAM 3.2/15.6 GiB` (call from a thread)."""
    nvml = _gpu()
    if nvml is not None:
        parts = []
        with contextlib.suppress(Exception):
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                parts.append(f"GPU{i} {util.gpu}% {mem.used / 2**30:.1f}/{mem.total / 2**30:.1f} GiB")
        if parts:
            return "  ".join(parts)
    try:
        import psutil
    except ImportError:
        return ""
    cpu = psutil.cpu_percent(interval=None)
    mem = psutil.virtual_memory()
    return f"CPU {cpu:.0f}% ({psutil.cpu_count()} cores)  RAM {mem.used / 2**30:.1f}/{mem.total / 2**30:.1f} GiB"
