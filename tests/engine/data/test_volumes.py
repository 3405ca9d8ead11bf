"""3D samples: volumes cut into blocks of consecutive slices, padding that the loss and Dice ignore."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from toydata import toy_slices

from reuse_console.engine.data.augment import AugmentConfig
from reuse_console.engine.data.batches import TrainBatches, model_samples
from reuse_console.engine.data.volumes import IGNORE, blocks, real_slices, whole_depth
from reuse_console.engine.evaluation.metrics import dice_counts
from reuse_console.engine.training.losses import seg_loss
from reuse_console.store.errors import UserError


def _two_volumes():
    """Subject 0 has two volumes (ED 5 slices, ES 3), subject 1 one of 2; stored interleaved."""
    s = toy_slices(n_subjects=2, per_subject=5, size=16)
    # 10 slices: volumes 0 (ED of subject 0), 1 (ES of subject 0), 2 (subject 1), not contiguous
    volume = np.array([0, 0, 1, 0, 1, 2, 0, 1, 2, 0], np.int32)
    subject = np.array([0, 0, 0, 0, 0, 1, 0, 0, 1, 0], np.int32)
    s.volume, s.volumes, s.subject = volume, ["p1_ED", "p1_ES", "p2_ED"], subject
    s.images = np.arange(10, dtype=np.float32)[:, None, None] + np.zeros((10, 16, 16), np.float32)
    return s


def test_blocks_keep_slice_order_per_volume_and_pad_the_last() -> None:
    s = _two_volumes()
    b = blocks(s, 2)
    # volume 0: slices 0,1,3,6,9 -> blocks [0,1] [3,6] [9,pad]; volume 1: 2,4,7 -> [2,4] [7,pad]; volume 2: 5,8
    firsts = [[float(b.images[i, d, 0, 0]) for d in range(2)] for i in range(len(b))]
    assert firsts == [[0, 1], [3, 6], [9, 0], [2, 4], [7, 0], [5, 8]]
    assert b.subject.tolist() == [0, 0, 0, 0, 0, 1] and b.volume.tolist() == [0, 0, 0, 1, 1, 2]
    assert (b.labels[2, 1] == IGNORE).all() and (b.labels[2, 0] != IGNORE).all()
    assert real_slices(b.labels[2]).tolist() == [0] and real_slices(b.labels[0]).tolist() == [0, 1]
    assert b.attrs["depth"] == 2 and b.size == 16


def test_whole_volumes_are_padded_to_a_multiple_of_16() -> None:
    s = _two_volumes()
    assert whole_depth(s) == 16  # deepest volume: 5 slices
    s.volume = np.zeros(10, np.int32)  # one volume of 10 slices, 17 would give 32
    assert whole_depth(s) == 16
    big = toy_slices(n_subjects=1, per_subject=17, size=16)  # no volume index: one volume per subject
    assert whole_depth(big) == 32
    samples = model_samples(big, size=None, depth=None, dims=3)
    assert samples.images.shape == (1, 32, 16, 16)


def test_a_3d_batch_counts_slices() -> None:
    """--batch is in slices: 16 slices of blocks of 4 are batches of 4 blocks (B, 1, D, H, W)."""
    b = model_samples(toy_slices(n_subjects=4, per_subject=8, size=16), size=None, depth=4, dims=3)
    batches = TrainBatches(
        b, b.slice_indices("train"), batch=16, seed=0, augment=AugmentConfig(), device=torch.device("cpu")
    )
    x, y = next(batches.epochs(1, 1))
    assert x.shape == (4, 1, 4, 16, 16) and y.shape == (4, 4, 16, 16)
    with pytest.raises(UserError, match="already cut into blocks"):
        blocks(b, 2)


def test_dice_counts_leave_padding_out_by_hand() -> None:
    # one sample of 2 slices of 1x3 pixels; the second slice is padding, predicted as class 1
    target = torch.tensor([[[[1, 1, 0]], [[IGNORE, IGNORE, IGNORE]]]])
    pred = torch.tensor([[[[1, 0, 0]], [[1, 1, 1]]]])
    counts = dice_counts(pred, target, 2)[0]
    # class 0: inter 1, pred 2, ref 1; class 1: inter 1, pred 1, ref 2 (padding counted nowhere)
    assert counts.tolist() == [[1.0, 1.0], [2.0, 1.0], [1.0, 2.0]]


def test_seg_loss_on_a_padded_block_equals_the_loss_on_its_real_slices() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 3, 8, 8, generator=g)
    target = torch.randint(0, 4, (1, 3, 8, 8), generator=g)
    padded_logits = torch.cat([logits, torch.randn(1, 4, 2, 8, 8, generator=g) * 5], dim=2)
    padded_target = torch.cat([target, torch.full((1, 2, 8, 8), IGNORE)], dim=1)
    want = seg_loss(logits, target, [1, 2, 3])
    assert float(seg_loss(padded_logits, padded_target, [1, 2, 3])) == pytest.approx(float(want), rel=1e-6)
    # and the 3D loss is the 2D loss of the same voxels laid out as slices: CE by torch's own formula
    ce = F.cross_entropy(logits.permute(0, 2, 1, 3, 4).reshape(3, 4, 8, 8), target.reshape(3, 8, 8))
    assert float(F.cross_entropy(padded_logits, padded_target, ignore_index=IGNORE)) == pytest.approx(float(ce))
