"""A tiny synthetic cardiac data set written straight into a lab (no phantom, no NIfTI import).

Discs stand in for the LV cavity, rings for the myocardium and a smaller disc for the RV, so a
few epochs of a base-width-4 UNet already learn something and every class is present.
"""

from __future__ import annotations

import numpy as np

from reuse_console.engine.data.slices import CARDIAC_CLASSES, SliceSet, write_slices

SPACING = (1.5, 1.25)


def toy_slices(
    n_subjects: int = 4,
    per_subject: int = 4,
    size: int = 64,
    seed: int = 0,
    name: str = "toy",
    present: list[bool] | None = None,
) -> SliceSet:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels, subject = [], [], []
    for s in range(n_subjects):
        for _ in range(per_subject):
            cy, cx = size / 2 + rng.normal(0, 3, 2)
            r = size * (0.12 + 0.03 * rng.random())
            d = np.hypot(yy - cy, xx - cx)
            lab = np.zeros((size, size), np.uint8)
            lab[d < r * 1.4] = 2
            lab[d < r] = 3
            lab[(np.hypot(yy - cy, xx - (cx - r * 2.2)) < r * 0.8) & (lab == 0)] = 1
            img = np.array([0.0, 0.8, 0.3, 1.0], np.float32)[lab] + rng.normal(0, 0.1, (size, size))
            images.append(((img - img.mean()) / img.std()).astype(np.float32))
            labels.append(lab)
            subject.append(s)
    keep = present or [True] * 4
    labels_arr = np.stack(labels)
    for c, p in enumerate(keep):
        if not p:
            labels_arr[labels_arr == c] = 0
    return SliceSet(
        name=name,
        images=np.stack(images),
        labels=labels_arr,
        subject=np.asarray(subject, np.int32),
        subjects=[f"patient{i + 1:03d}" for i in range(n_subjects)],
        split=["train"] * (n_subjects - 1) + ["val"],
        classes=list(CARDIAC_CLASSES),
        present=list(keep),
        spacing=SPACING,
    )


def write_toy(lab, name: str = "toy", **kwargs) -> SliceSet:
    slices = toy_slices(name=name, **kwargs)
    write_slices(lab.path("datasets", name), slices, source={"format": "toy"})
    return slices
