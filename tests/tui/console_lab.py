"""The console tests' lab: built once per test process with the engine APIs, copied per test.

A 3-subject phantom at 64 px, a base-width-4 UNet trained 1 epoch for each task, a scan of one
against the other and their RMSE comparison. Every file's `created` stamp is fixed, so screens
that list the lab render the same way on every run (snapshot tests).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reuse_console.store.lab import Lab

FIXED_TIME = "2025-01-02T03:04:05+00:00"
_BUILT: dict[str, Path] = {}


@contextlib.contextmanager
def fixed_clock() -> Iterator[None]:
    """Stamp every lab file with FIXED_TIME while building."""
    from reuse_console.store import h5

    real = h5.now_iso
    h5.now_iso = lambda: FIXED_TIME
    try:
        yield
    finally:
        h5.now_iso = real


def _build(root: Path) -> Path:
    import torch

    from reuse_console.engine.compare import run_rmse
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.scan_lab import run_scan
    from reuse_console.engine.train import TrainSpec, train

    torch.set_num_threads(1)
    make_phantom(root / "phantom", subjects=3, scale=0.5, cine=False)
    lab = Lab(root / "lab")
    with fixed_clock():
        import_dataset(lab, root / "phantom", name="acdc", size=64, val_subjects=1)
        for task in ("seg", "ae"):
            spec = TrainSpec(data="acdc", arch_config={"base_width": 4}, task=task, epochs=1, batch=8, name=f"unet-{task}")
            train(lab, spec, device="cpu")
        run_scan(lab, "unet-seg", "unet-ae", "acdc", device="cpu", name="seg-vs-ae")
        run_rmse(lab, ["unet-seg", "unet-ae"], name="seg-vs-ae-rmse")
    return lab.root


def console_lab(dest: Path) -> Lab:
    """A fresh copy of the test lab at `dest` (the first call in a process builds it, ~10 s)."""
    if "lab" not in _BUILT:
        _BUILT["lab"] = _build(Path(tempfile.mkdtemp(prefix="console-lab-")))
    shutil.copytree(_BUILT["lab"], dest)
    return Lab(dest)
