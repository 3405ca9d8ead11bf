"""Augmentation that keeps image and label aligned, and is reproducible without saved RNG state.

Every random draw of a sample comes from a `torch.Generator` seeded from (seed, epoch, sample
index): the same sample in the same epoch is augmented the same way whichever worker process
loads it, how many workers there are, and whether training was interrupted and resumed. The
geometric part goes through torchvision.transforms.v2 on `tv_tensors.Image` / `tv_tensors.Mask`,
so the label map is moved with the image and resampled with nearest neighbour (no new classes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of each random change; `AugmentConfig.off()` changes nothing."""

    flip_p: float = 0.5  # per axis (left-right, up-down)
    rotate_deg: float = 15.0  # uniform in [-rotate_deg, rotate_deg]
    scale: tuple[float, float] = (0.9, 1.1)
    contrast: tuple[float, float] = (0.9, 1.1)  # intensity multiplier (images are z-scored)
    brightness: float = 0.1  # additive shift, uniform in [-brightness, brightness]

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(flip_p=0.0, rotate_deg=0.0, scale=(1.0, 1.0), contrast=(1.0, 1.0), brightness=0.0)

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig.off()

    def to_dict(self) -> dict:
        return asdict(self)


def derived_generator(seed: int, epoch: int, index: int, stream: int = 0) -> torch.Generator:
    """A generator private to (seed, epoch, index, stream), well mixed by numpy's SeedSequence.

    Streams keep unrelated draws apart: 0 augments samples, 1 orders an epoch's samples.
    """
    entropy = (int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index))
    state = np.random.SeedSequence(entropy, spawn_key=(int(stream),)).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of every random draw that augments sample `index` in `epoch`."""
    return derived_generator(seed, epoch, index, stream=0)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which an epoch visits its `n` training samples (a seeded permutation)."""
    return torch.randperm(n, generator=derived_generator(seed, epoch, 0, stream=1))


def augment_pair(
    image: torch.Tensor, label: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment one slice: image (1, H, W) float32, label (H, W) integer; returns the same shapes.

    The draw order is fixed (flip lr, flip ud, angle, scale, contrast, brightness), so a config
    change never reshuffles the other draws of a sample.
    """
    u = torch.rand(6, generator=generator, dtype=torch.float64).tolist()
    img = tv_tensors.Image(image)
    mask = tv_tensors.Mask(label.unsqueeze(0))
    if u[0] < config.flip_p:
        img, mask = F.horizontal_flip(img), F.horizontal_flip(mask)
    if u[1] < config.flip_p:
        img, mask = F.vertical_flip(img), F.vertical_flip(mask)
    angle = (2.0 * u[2] - 1.0) * config.rotate_deg
    scale = config.scale[0] + u[3] * (config.scale[1] - config.scale[0])
    if angle != 0.0 or scale != 1.0:
        fill = float(img.min())  # outside the field of view is as dark as the darkest pixel
        geometry = {"angle": angle, "translate": [0.0, 0.0], "scale": scale, "shear": [0.0, 0.0]}
        img = F.affine(img, **geometry, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)
        mask = F.affine(mask, **geometry, interpolation=v2.InterpolationMode.NEAREST, fill=0)
    contrast = config.contrast[0] + u[4] * (config.contrast[1] - config.contrast[0])
    shift = (2.0 * u[5] - 1.0) * config.brightness
    out = img.as_subclass(torch.Tensor)
    if contrast != 1.0 or shift != 0.0:
        out = out * contrast + shift
    return out.contiguous(), mask.as_subclass(torch.Tensor)[0].contiguous()
