"""The training losses against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reuse_console.engine.training.losses import ae_loss, ae_target, dice_classes, seg_loss, soft_dice_loss


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_soft_dice_matches_hand_computation() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    target = rng.integers(0, 4, size=(2, 3, 3))
    p = _softmax(logits.astype(np.float64))
    smooth = 1.0
    terms = []
    for c in (1, 3):  # the classes asked for; sums over the whole batch
        g = (target == c).astype(np.float64)
        inter = (p[:, c] * g).sum()
        terms.append((2 * inter + smooth) / (p[:, c].sum() + g.sum() + smooth))
    expected = 1.0 - np.mean(terms)
    got = soft_dice_loss(torch.from_numpy(logits), torch.from_numpy(target), [1, 3], smooth=smooth)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_soft_dice_is_near_zero_for_a_confident_right_answer_and_near_one_for_a_wrong_one() -> None:
    target = torch.tensor([[[0, 1], [2, 3]]])
    right = torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float() * 50
    wrong = torch.nn.functional.one_hot((target + 1) % 4, 4).permute(0, 3, 1, 2).float() * 50
    assert float(soft_dice_loss(right, target, [1, 2, 3], smooth=1e-6)) < 1e-5
    assert float(soft_dice_loss(wrong, target, [1, 2, 3], smooth=1e-6)) > 0.999


def test_a_class_absent_from_batch_and_not_predicted_costs_nothing() -> None:
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.zeros(1, 4, 4, 4)
    logits[:, 0] = 50.0  # background everywhere, as the labels say
    assert float(soft_dice_loss(logits, target, [2])) == pytest.approx(0.0, abs=1e-6)


def test_dice_term_uses_present_foreground_classes_only() -> None:
    assert dice_classes([True, True, True, True]) == [1, 2, 3]
    assert dice_classes([True, False, True, False]) == [2]  # t1: myocardium only
    assert dice_classes([True, False, False, False]) == []
    logits = torch.randn(1, 4, 2, 2, requires_grad=True)
    zero = soft_dice_loss(logits, torch.zeros(1, 2, 2, dtype=torch.long), [])
    assert zero.item() == 0.0
    zero.backward()  # still part of the graph


def test_seg_loss_with_uniform_logits_is_log_c_plus_hand_dice() -> None:
    target = torch.tensor([[[0, 1, 1, 2], [2, 2, 3, 0]]])  # 8 pixels
    logits = torch.zeros(1, 4, 2, 4)
    n, c = 8, 4
    dice = []
    for k in (1, 2, 3):
        count = int((target == k).sum())
        dice.append((2 * count / c + 1) / (n / c + count + 1))
    expected = math.log(c) + 1 - sum(dice) / 3
    assert float(seg_loss(logits, target, [1, 2, 3])) == pytest.approx(expected, rel=1e-6)


def test_ae_loss_compares_every_channel_with_the_input() -> None:
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 1, 4, 4)).astype(np.float32)
    out = rng.normal(size=(2, 4, 4, 4)).astype(np.float32)
    expected = np.mean((out - images) ** 2)  # broadcast over the 4 channels
    assert float(ae_loss(torch.from_numpy(out), torch.from_numpy(images))) == pytest.approx(expected, rel=1e-6)
    assert ae_target(torch.from_numpy(images), 4).shape == (2, 4, 4, 4)
    perfect = torch.from_numpy(images).repeat(1, 4, 1, 1)
    assert float(ae_loss(perfect, torch.from_numpy(images))) == 0.0
