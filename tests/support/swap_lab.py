"""A tiny lab for swap/scan/compare tests: a 64-px data set and seg, ae and odd checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from reuse_console.engine.data.slices import SliceSet, write_slices
from reuse_console.engine.models.registry import build_model, default_config, save_model
from reuse_console.store.checkpoints import CheckpointMeta
from reuse_console.store.lab import Lab

CLASSES = ["background", "RV", "MYO", "LV"]


def blobs(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images with a bright disc (LV), a ring around it (MYO) and a side blob (RV), plus noise."""
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.08, 0.16) * size
        d = np.hypot(yy - cy, xx - cx)
        rv = np.hypot(yy - cy, xx - (cx - 2.2 * r)) < 0.9 * r
        labels[i][rv] = 1
        labels[i][(d >= r) & (d < 1.4 * r)] = 2
        labels[i][d < r] = 3
        images[i] = np.choose(labels[i], [0.0, 1.2, -0.8, 1.8]) + rng.normal(0, 0.5, (size, size))
    return images, labels


def make_data(lab: Lab, name: str = "toy", subjects: int = 4, per_subject: int = 3, size: int = 64) -> str:
    rng = np.random.default_rng(0)
    images, labels = blobs(subjects * per_subject, size, rng)
    slices = SliceSet(
        name=name,
        images=images,
        labels=labels,
        subject=np.repeat(np.arange(subjects, dtype=np.int32), per_subject),
        subjects=[f"patient{i:03d}" for i in range(subjects)],
        split=["train" if i < subjects // 2 else "val" for i in range(subjects)],
        classes=list(CLASSES),
        present=[True] * 4,
        spacing=(1.5, 1.5),
    )
    write_slices(lab.path("datasets", name), slices, source={"format": "test"})
    return name


def randomise_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.3)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model


def make_checkpoint(
    lab: Lab, name: str, *, task: str = "seg", seed: int = 0, arch: str = "unet", size: int = 64, **config
) -> str:
    config = default_config(arch, 1, 4, **({"base_width": 4} if arch == "unet" else {"width": 0.125}) | config)
    torch.manual_seed(seed)
    model = randomise_bn(build_model(arch, config), seed)
    meta = CheckpointMeta(
        arch=arch, arch_config=config, task=task, data="toy", classes=list(CLASSES), extra={"size": size}
    )
    save_model(lab, name, model, meta)
    return name


def make_lab(lab: Lab) -> Lab:
    make_data(lab)
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    make_checkpoint(lab, "wide", seed=3, base_width=8)
    return lab
