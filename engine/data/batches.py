"""Training batches: which slices, in which order, augmented how, on which device.

The order of an epoch and the augmentation of every sample are functions of (seed, epoch,
sample), never of hidden RNG state, so an epoch's batches are the same whether training ran
straight through or was resumed, and whatever `workers` is. Without augmentation the slices
live on the device and batches are gathered there (nothing crosses the bus per step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reuse_console.engine.data.augment import AugmentConfig, augment_pair, epoch_order, sample_generator
from reuse_console.engine.data.slices import SliceSet, resample_slices
from reuse_console.engine.data.volumes import blocks, sample_depth
from reuse_console.store.errors import UserError


def resize_slices(slices: SliceSet, size: int) -> SliceSet:
    """A copy of a SliceSet resampled in-plane to size x size (bilinear images, nearest labels).

    The in-plane spacing grows or shrinks with it, so saved predictions keep true millimetres.
    """
    if size == slices.size:
        return slices
    if size < 16:
        raise UserError(f"--size {size}: use at least 16 pixels")
    factor = (size / slices.images.shape[1], size / slices.images.shape[2])
    spacing = (slices.spacing[0] / factor[0], slices.spacing[1] / factor[1])
    return dataclasses.replace(
        slices,
        images=resample_slices(slices.images, factor, order=1).astype(np.float32),
        labels=resample_slices(slices.labels, factor, order=0).astype(np.uint8),
        spacing=spacing,
    )


def model_samples(slices: SliceSet, *, size: int | None, depth: int | None = None, dims: int = 2) -> SliceSet:
    """The samples a model takes: slices resampled in-plane to `size`; for a 3D model (`dims` 3)
    blocks of `depth` slices (None: whole volumes, engine/data/volumes.py)."""
    if size is not None and int(size) != slices.size:
        slices = resize_slices(slices, int(size))
    if dims == 3:
        slices = blocks(slices, sample_depth(slices, depth))
    return slices


def slices_per_sample(slices: SliceSet) -> int:
    """1 for 2D slices, the depth of a block for 3D samples."""
    return int(slices.images.shape[1]) if slices.images.ndim == 4 else 1


def pick_subjects(slices: SliceSet, count: int | None, seed: int) -> list[int]:
    """`count` training subjects chosen by `seed` (all of them when None), in data-set order.

    The paper's "10 vs 50 training subjects": the same seed picks the same subjects, and a
    smaller count with the same seed is not a subset (each count is its own draw).
    """
    train = slices.subjects_in("train")
    if not train:
        raise UserError(f"data set {slices.name!r} has no training subjects")
    if count is None:
        return list(train)
    if count < 1 or count > len(train):
        raise UserError(f"--subjects {count}: data set {slices.name!r} has {len(train)} training subjects")
    rng = np.random.default_rng(seed)
    return sorted(int(s) for s in rng.choice(np.asarray(train), size=count, replace=False))


class _AugmentedSlices(Dataset):
    """Map-style data set keyed by (epoch, sample): augments with the sample's own generator."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, config: AugmentConfig, seed: int) -> None:
        self.images, self.labels, self.config, self.seed = images, labels, config, seed

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        generator = sample_generator(self.seed, epoch, index)
        return augment_pair(self.images[index].unsqueeze(0), self.labels[index], self.config, generator)


class _EpochSampler:
    """Batches of (epoch, sample) keys for epochs first..last, in each epoch's seeded order."""

    def __init__(self, n: int, batch: int, seed: int, first: int, last: int) -> None:
        self.n, self.batch, self.seed, self.first, self.last = n, batch, seed, first, last

    def __len__(self) -> int:
        return (self.last - self.first + 1) * (self.n // self.batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for epoch in range(self.first, self.last + 1):
            order = epoch_order(self.seed, epoch, self.n).tolist()
            for start in range(0, self.n // self.batch * self.batch, self.batch):
                yield [(epoch, i) for i in order[start : start + self.batch]]


class TrainBatches:
    """The training slices of a run, served as (images (B,1,H,W) float32, labels (B,H,W) int64);
    3D blocks as (B,1,D,H,W) and (B,D,H,W), `batch` counting slices (batch // depth blocks, at least 1).

    Incomplete last batches are dropped (BatchNorm needs more than one value per channel); a
    training set smaller than one batch becomes a single batch.
    """

    def __init__(
        self,
        slices: SliceSet,
        indices: Sequence[int] | np.ndarray,
        *,
        batch: int,
        seed: int,
        augment: AugmentConfig,
        device: torch.device,
        workers: int = 0,
    ) -> None:
        index = np.asarray(indices, dtype=np.int64)
        per = slices_per_sample(slices)
        if len(index) < 2:
            what = "slice(s)" if per == 1 else f"block(s) of {per} slices"
            raise UserError(f"data set {slices.name!r}: {len(index)} training {what}; need at least 2")
        self.n = len(index)
        self.batch = min(max(1, batch // per), self.n)
        self.seed, self.augment, self.device, self.workers = seed, augment, device, workers
        self.images = torch.from_numpy(np.ascontiguousarray(slices.images[index], dtype=np.float32))
        self.labels = torch.from_numpy(np.ascontiguousarray(slices.labels[index], dtype=np.uint8))
        if not augment.enabled:
            self.images = self.images.to(device)
            self.labels = self.labels.to(device)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    def epochs(self, first: int, last: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every batch of epochs first..last (1-based), in order, already on the device."""
        if not self.augment.enabled:
            yield from self._resident(first, last)
            return
        loader = DataLoader(
            _AugmentedSlices(self.images, self.labels, self.augment, self.seed),
            batch_sampler=_EpochSampler(self.n, self.batch, self.seed, first, last),
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            # its own generator: the loader's base seed must not draw from the global RNG,
            # which dropout uses and which is reseeded per epoch
            generator=torch.Generator().manual_seed(self.seed & 0x7FFFFFFFFFFFFFFF),
        )
        for images, labels in loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True).long()

    def _resident(self, first: int, last: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for epoch in range(first, last + 1):
            order = epoch_order(self.seed, epoch, self.n).to(self.device)
            for start in range(0, self.steps_per_epoch * self.batch, self.batch):
                pick = order[start : start + self.batch]
                yield self.images[pick].unsqueeze(1), self.labels[pick].long()
