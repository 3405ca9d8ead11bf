"""The demo's similarity steps on a toy lab with the demo's names: everything made once, then skipped."""

from __future__ import annotations

import numpy as np
from swap_lab import make_checkpoint, make_data

from reuse_console.engine import demo_similarity as ds
from reuse_console.engine.reuse.plans import scan_dice_drops
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.scan_store import load_scan


def test_similarity_steps_make_and_then_skip(lab) -> None:
    make_data(lab, name="acdc")
    for name, task, seed in (
        ("unet-seg-acdc", "seg", 1),
        ("unet-ae-acdc", "ae", 1),
        ("unet-seg-acdc-s1", "seg", 5),
        ("unet-ae-acdc-s1", "ae", 6),
    ):
        make_checkpoint(lab, name, task=task, seed=seed)
    run_scan(lab, "unet-seg-acdc", "unet-ae-acdc", "acdc", kinds="RM,W", device="cpu", name=ds.SHARED_SCAN)
    found = ds.similarity_steps(lab, device="cpu")
    assert set(found.scans) == {ds.SHARED_SCAN, ds.OTHER_SCAN, ds.ALIGNED_SCAN}
    assert all(lab.exists("comparisons", f"predict-{s}") for s in found.scans)
    aligned = load_scan(lab, ds.ALIGNED_SCAN)
    assert aligned.options["align"] == "weights"
    drops = scan_dice_drops(aligned)
    assert found.scans[ds.ALIGNED_SCAN]["mean_drop"] == np.mean(list(drops.values()))
    assert len(found.lines()) == 3
    before = {p.name: p.stat().st_mtime_ns for p in lab.root.rglob("*.h5")}
    ds.similarity_steps(lab, device="cpu")  # a second run makes nothing new
    assert {p.name: p.stat().st_mtime_ns for p in lab.root.rglob("*.h5")} == before
