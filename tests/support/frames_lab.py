"""A data set of ED and ES frames in which some references lack a class: what `--empty` and
`--per volume` decide about (scan, swap and grid tests)."""

from __future__ import annotations

import numpy as np

from reuse_console.engine.data.slices import SliceSet, write_slices
from reuse_console.store.lab import Lab

CLASSES = ["background", "RV", "MYO", "LV"]


def make_frames(lab: Lab, name: str = "frames") -> SliceSet:
    """4 subjects x 2 volumes (ED, ES) x 3 slices of 64 px, subjects 0-1 train, 2-3 val; RV left
    out of the references of volume patient002_ES and of all of patient003."""
    from swap_lab import blobs

    images, labels = blobs(24, 64, np.random.default_rng(3))
    volume = np.repeat(np.arange(8, dtype=np.int32), 3)
    for v in (5, 6, 7):  # patient002_ES, patient003_ED, patient003_ES
        labels[volume == v] = np.where(labels[volume == v] == 1, 0, labels[volume == v])
    slices = SliceSet(
        name=name,
        images=images,
        labels=labels,
        subject=volume // 2,
        subjects=[f"patient{i:03d}" for i in range(4)],
        split=["train", "train", "val", "val"],
        classes=list(CLASSES),
        present=[True] * 4,
        spacing=(1.5, 1.5),
        volume=volume,
        volumes=[f"patient{i // 2:03d}_{'ED' if i % 2 == 0 else 'ES'}" for i in range(8)],
    )
    write_slices(lab.path("datasets", name), slices, source={"format": "test"})
    return slices
