"""Augmentation keeps image and label aligned and is a function of (seed, epoch, sample) alone."""

from __future__ import annotations

import numpy as np
import torch
from toydata import toy_slices

from reuse_console.engine.data.augment import AugmentConfig, augment_pair, epoch_order, sample_generator


def _pair(i: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    s = toy_slices(n_subjects=1, per_subject=3)
    return torch.from_numpy(s.labels[i].astype(np.float32)).unsqueeze(0), torch.from_numpy(s.labels[i])


def test_flips_move_image_and_label_together() -> None:
    image, label = _pair()  # image == label values, so alignment is checkable pixel by pixel
    flips = AugmentConfig(flip_p=1.0, rotate_deg=0.0, scale=(1.0, 1.0), contrast=(1.0, 1.0), brightness=0.0)
    out_image, out_label = augment_pair(image, label, flips, sample_generator(0, 1, 0))
    assert torch.equal(out_label, label.flip(0).flip(1))
    assert torch.equal(out_image[0], out_label.float())


def test_rotation_and_scale_keep_labels_valid_and_aligned() -> None:
    image, label = _pair()
    geometry = AugmentConfig(flip_p=0.0, rotate_deg=30.0, scale=(0.8, 1.2), contrast=(1.0, 1.0), brightness=0.0)
    out_image, out_label = augment_pair(image, label, geometry, sample_generator(0, 1, 5))
    assert out_label.dtype == label.dtype and out_label.shape == label.shape
    assert set(out_label.unique().tolist()) <= {0, 1, 2, 3}  # nearest neighbour: no new classes
    assert not torch.equal(out_label, label)
    agree = (out_image[0].round() == out_label.float()).float().mean()
    assert agree > 0.95  # bilinear image and nearest label differ only along edges


def test_same_seed_epoch_sample_same_draw_and_different_otherwise() -> None:
    image, label = torch.randn(1, 32, 32), torch.zeros(32, 32, dtype=torch.uint8)
    cfg = AugmentConfig()
    a = augment_pair(image, label, cfg, sample_generator(7, 2, 3))[0]
    b = augment_pair(image, label, cfg, sample_generator(7, 2, 3))[0]
    c = augment_pair(image, label, cfg, sample_generator(7, 3, 3))[0]
    d = augment_pair(image, label, cfg, sample_generator(7, 2, 4))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, d)


def test_off_changes_nothing_and_epoch_order_is_a_seeded_permutation() -> None:
    image, label = _pair()
    out_image, out_label = augment_pair(image, label, AugmentConfig.off(), sample_generator(0, 1, 0))
    assert torch.equal(out_image, image) and torch.equal(out_label, label)
    assert not AugmentConfig.off().enabled and AugmentConfig().enabled
    order = epoch_order(1, 1, 50)
    assert sorted(order.tolist()) == list(range(50))
    assert torch.equal(order, epoch_order(1, 1, 50)) and not torch.equal(order, epoch_order(1, 2, 50))
