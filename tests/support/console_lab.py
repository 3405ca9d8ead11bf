"""The console tests' labs: built once per test process with the engine APIs, copied per test.

`console_lab`: a 3-subject phantom at 64 px, a base-width-4 UNet trained 1 epoch for each task,
a scan of one against the other and their RMSE comparison (Pilot tests, which check what they
see against the engine at run time).

`snapshot_lab`: the same objects, but from a fixed synthetic data set written here and seeded,
untrained UNets, so its numbers do not move when the phantom or the training loop changes
(snapshot tests compare pixels). Every file's `created` stamp is fixed in both.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reuse_console.store.lab import Lab

FIXED_TIME = "2025-01-02T03:04:05+00:00"
_BUILT: dict[str, Path] = {}


@atexit.register
def _remove_built() -> None:
    for root in _BUILT.values():
        shutil.rmtree(root.parent, ignore_errors=True)


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

    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.training.train import TrainSpec, train

    torch.set_num_threads(1)
    make_phantom(root / "phantom", subjects=3, scale=0.5, cine=False)
    lab = Lab(root / "lab")
    with fixed_clock():
        import_dataset(lab, root / "phantom", name="acdc", size=64, val_subjects=1)
        for task in ("seg", "ae"):
            spec = TrainSpec(
                data="acdc", arch_config={"base_width": 4}, task=task, epochs=1, batch=8, name=f"unet-{task}"
            )
            train(lab, spec, device="cpu")
        run_scan(lab, "unet-seg", "unet-ae", "acdc", device="cpu", name="seg-vs-ae")
        run_rmse(lab, ["unet-seg", "unet-ae"], name="seg-vs-ae-rmse")
    return lab.root


def _discs(n_subjects: int = 3, per_subject: int = 4, size: int = 64):
    """The engine tests' toy discs (LV, myocardium ring, RV; every class present) named "acdc",
    at the square 1.5 mm spacing the snapshots were taken with."""
    import dataclasses

    from toydata import toy_slices

    slices = toy_slices(n_subjects=n_subjects, per_subject=per_subject, size=size, seed=0, name="acdc")
    return dataclasses.replace(slices, spacing=(1.5, 1.5))


def _build_fixed(root: Path) -> Path:
    import torch

    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.data.slices import write_slices
    from reuse_console.engine.evaluation.evaluate import evaluate_checkpoint
    from reuse_console.engine.models.registry import build_model, default_config, save_model
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.store.checkpoints import CheckpointMeta

    torch.set_num_threads(1)
    lab = Lab(root / "lab")
    slices = _discs()
    with fixed_clock():
        write_slices(lab.path("datasets", "acdc"), slices, source={"format": "synthetic discs"})
        for seed, task in enumerate(("seg", "ae")):
            torch.manual_seed(seed)
            config = default_config("unet", 1, 4, base_width=4)
            model = build_model("unet", config)
            meta = CheckpointMeta("unet", config, task, "acdc", list(slices.classes), epoch=0, seed=seed)
            save_model(lab, f"unet-{task}", model, meta)
            result = evaluate_checkpoint(lab, f"unet-{task}", device="cpu")
            meta.metrics = {k: result[k] for k in ("dice", "dice_fg", "mse", "psnr") if k in result}
            save_model(lab, f"unet-{task}", model, meta)
        run_scan(lab, "unet-seg", "unet-ae", "acdc", device="cpu", name="seg-vs-ae")
        run_rmse(lab, ["unet-seg", "unet-ae"], name="seg-vs-ae-rmse")
    return lab.root


def snapshot_lab(dest: Path) -> Lab:
    """A fresh copy of the fixed lab for snapshots (built once per process, a few seconds)."""
    if "fixed" not in _BUILT:
        _BUILT["fixed"] = _build_fixed(Path(tempfile.mkdtemp(prefix="console-snapshots-")))
    shutil.copytree(_BUILT["fixed"], dest)
    return Lab(dest)


def console_lab(dest: Path) -> Lab:
    """A fresh copy of the test lab at `dest` (the first call in a process builds it, ~10 s)."""
    if "lab" not in _BUILT:
        _BUILT["lab"] = _build(Path(tempfile.mkdtemp(prefix="console-lab-")))
    shutil.copytree(_BUILT["lab"], dest)
    return Lab(dest)
