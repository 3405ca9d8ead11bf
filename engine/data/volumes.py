"""Slices -> 3D samples for models with 3D convolutions: blocks of consecutive slices of one volume.

A data set stores normalised 2D slices (engine/data/slices.py) with the volume (frame) each one
belongs to. A 3D model takes a block of `depth` consecutive slices of one volume: each volume is
cut into ceil(slices / depth) blocks in slice order, the last one padded with empty slices. Padding
is labelled IGNORE: the loss and Dice leave it out (engine/training/losses.py,
engine/evaluation/metrics.py), so a subject's Dice is over exactly its real voxels, as in 2D.

The result is a SliceSet whose samples are blocks, images (N, D, H, W), so batching, splits,
subject picking and evaluation order work on it unchanged; `attrs["depth"]` says it holds blocks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from reuse_console.engine.data.slices import SliceSet
from reuse_console.store.errors import UserError

IGNORE = 255  # label of padding voxels: no class, left out of the loss and of Dice
WHOLE_MULTIPLE = 16  # whole volumes are padded to a multiple of this: four 2x downsamplings fit


def volume_slices(slices: SliceSet) -> list[np.ndarray]:
    """The slice indices of each volume, in stored (slice) order; one volume per subject when the
    data set has no volume index."""
    groups = slices.volume if slices.volume is not None else slices.subject
    order = np.argsort(np.asarray(groups, dtype=np.int64), kind="stable")
    keys = np.asarray(groups)[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return [part for part in np.split(order, cuts) if len(part)]


def whole_depth(slices: SliceSet) -> int:
    """The default depth: the deepest volume's slice count rounded up to WHOLE_MULTIPLE."""
    deepest = max((len(v) for v in volume_slices(slices)), default=1)
    return -(-deepest // WHOLE_MULTIPLE) * WHOLE_MULTIPLE


def sample_depth(slices: SliceSet, depth: int | None) -> int:
    """`depth` checked, or the whole-volume default when None."""
    if depth is None:
        return whole_depth(slices)
    if depth < 1:
        raise UserError(f"--depth must be at least 1 slice (got {depth})")
    return int(depth)


def blocks(slices: SliceSet, depth: int) -> SliceSet:
    """`slices` as blocks of `depth` consecutive slices of one volume (images (N, D, H, W))."""
    if slices.images.ndim != 3:
        raise UserError(f"data set {slices.name!r} is already cut into blocks")
    h, w = slices.images.shape[1:]
    starts = [(v, s) for v in volume_slices(slices) for s in range(0, len(v), depth)]
    images = np.zeros((len(starts), depth, h, w), dtype=np.float32)
    labels = np.full((len(starts), depth, h, w), IGNORE, dtype=np.uint8)
    subject = np.zeros(len(starts), dtype=np.int32)
    volume = np.zeros(len(starts), dtype=np.int32)
    for i, (members, start) in enumerate(starts):
        part = members[start : start + depth]
        images[i, : len(part)] = slices.images[part]
        labels[i, : len(part)] = slices.labels[part]
        subject[i] = slices.subject[part[0]]
        volume[i] = slices.volume[part[0]] if slices.volume is not None else subject[i]
    return dataclasses.replace(
        slices,
        images=images,
        labels=labels,
        subject=subject,
        volume=volume,
        volumes=list(slices.volumes) if slices.volume is not None else list(slices.subjects),
        attrs={**slices.attrs, "depth": depth},
    )


def real_slices(labels: np.ndarray) -> np.ndarray:
    """The slices of one block (D, H, W) that are not padding (a real slice is never all IGNORE)."""
    flat = labels.reshape(labels.shape[0], -1)
    return np.flatnonzero((flat != IGNORE).any(axis=1))
