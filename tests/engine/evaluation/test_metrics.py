"""engine/metrics against an independent computation with Python sets (incl. the empty-set rules)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reuse_console.engine.evaluation.metrics import (
    DiceAccumulator,
    DiceResult,
    class_map,
    confusion_base,
    dice_counts,
    psnr,
)


def _dice_by_sets(pred: np.ndarray, ref: np.ndarray, c: int) -> float:
    """2|P∩G| / (|P| + |G|) over voxel coordinate sets; 1.0 if both empty."""
    p = {tuple(i) for i in np.argwhere(pred == c)}
    g = {tuple(i) for i in np.argwhere(ref == c)}
    if not p and not g:
        return 1.0
    return 2 * len(p & g) / (len(p) + len(g))


def test_per_subject_dice_over_all_slices_matches_sets() -> None:
    rng = np.random.default_rng(0)
    n, c, s = 10, 4, 3
    ref = rng.integers(0, 3, size=(n, 6, 6))  # class 3 never in the reference
    pred = rng.integers(0, 4, size=(n, 6, 6))
    subject_of = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    pred[7:] = np.where(pred[7:] == 3, 0, pred[7:])  # subject 2: class 3 neither predicted nor there
    acc = DiceAccumulator(c, s)
    for start in (0, 4, 8):  # batches that cut across subjects
        part = slice(start, start + 4)
        acc.update(torch.from_numpy(pred[part]), torch.from_numpy(ref[part]), subject_of[part])
    got = acc.per_subject()
    for subj in range(s):
        rows = subject_of == subj
        for k in range(c):
            assert got[subj, k] == pytest.approx(_dice_by_sets(pred[rows], ref[rows], k)), (subj, k)
    assert got[2, 3] == 1.0  # empty reference, empty prediction
    assert got[0, 3] == 0.0  # empty reference, something predicted


def test_empty_rules_and_absent_classes() -> None:
    ref = np.zeros((1, 4, 4), np.int64)
    pred = np.zeros((1, 4, 4), np.int64)
    pred[0, 0, 0] = 2
    acc = DiceAccumulator(4, 1)
    acc.update(torch.from_numpy(pred), torch.from_numpy(ref), [0])
    result = DiceResult.from_accumulator(acc, ["background", "RV", "MYO", "LV"], [True, False, True, False], ["p1"])
    by_class = result.by_class()
    assert by_class["RV"] is None and by_class["LV"] is None  # absent, not 0
    assert by_class["MYO"] == 0.0  # predicted where nothing is
    assert by_class["background"] == pytest.approx(2 * 15 / (15 + 16))
    assert result.dice_fg == 0.0  # mean over present foreground classes only (MYO)
    data = result.to_dict()
    assert data["per_subject"]["p1"]["RV"] is None


def test_mean_std_over_subjects_and_dice_fg() -> None:
    per_subject = np.array([[1.0, 0.5, 0.8, 0.2], [0.8, 0.7, 0.6, 0.4]])
    r = DiceResult(["background", "RV", "MYO", "LV"], [True] * 4, ["a", "b"], per_subject)
    assert np.allclose(r.mean, [0.9, 0.6, 0.7, 0.3])
    assert np.allclose(r.std, [0.1, 0.1, 0.1, 0.1])  # population std over subjects
    assert r.dice_fg == pytest.approx((0.6 + 0.7 + 0.3) / 3)


def test_dice_counts_per_sample() -> None:
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    ref = torch.tensor([[0, 1, 2], [2, 0, 0]])
    counts = dice_counts(pred, ref, 3).numpy()
    # sample 0: inter (1,1,0), pred (1,2,0), ref (1,1,1); sample 1: inter (1,0,1), pred (1,0,2), ref (2,0,1)
    assert counts[0].tolist() == [[1, 1, 0], [1, 2, 0], [1, 1, 1]]
    assert counts[1].tolist() == [[1, 0, 1], [1, 0, 2], [2, 0, 1]]


@pytest.mark.parametrize("shape", [(5, 9, 7), (3, 4, 6, 5)])
def test_dice_counts_against_per_class_loops_with_padding(shape: tuple[int, ...]) -> None:
    """The one-bincount confusion counts equal counting each class with numpy masks; padding
    voxels (IGNORE 255 in the reference) count nowhere; a kept `confusion_base` gives the same."""
    g = torch.Generator().manual_seed(len(shape))
    pred = torch.randint(0, 4, shape, generator=g)
    ref = torch.randint(0, 4, shape, generator=g)
    ref[torch.rand(shape, generator=g) < 0.2] = 255
    counts = dice_counts(pred, ref, 4).numpy()
    assert np.array_equal(counts, dice_counts(pred, ref, 4, confusion_base(ref, 4)).numpy())
    p, r = pred.numpy(), ref.numpy()
    for b in range(shape[0]):
        real = r[b] != 255
        for c in range(4):
            assert counts[b, 0, c] == np.sum((p[b] == c) & (r[b] == c))
            assert counts[b, 1, c] == np.sum((p[b] == c) & real)
            assert counts[b, 2, c] == np.sum(r[b] == c)


def test_psnr_formula() -> None:
    assert psnr(0.01, 1.0) == pytest.approx(20.0)
    assert psnr(4.0, 8.0) == pytest.approx(10 * math.log10(16.0))
    assert psnr(0.0, 1.0) == math.inf


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("shape", [(3, 4, 9, 7), (2, 3, 5, 6, 4), (2, 20, 6, 6)])
def test_class_map_is_numpys_argmax_in_every_layout_with_ties_and_nans(shape: tuple[int, ...], layout: str) -> None:
    gen = torch.Generator().manual_seed(len(shape) * 7 + shape[1])
    scores = torch.randint(0, 3, shape, generator=gen).float()  # few values: many ties
    flat = scores.reshape(-1)
    flat[torch.randperm(flat.numel(), generator=gen)[: flat.numel() // 10]] = float("nan")
    flat[:3] = float("nan")  # a voxel whose first scores are NaN
    want = np.argmax(scores.numpy(), axis=1)  # numpy: the first maximum, NaN counted largest
    if layout == "channels_last":
        fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
        scores = scores.contiguous(memory_format=fmt)
    elif layout == "strided":  # a view whose class dimension is neither innermost nor contiguous
        scores = torch.cat([scores, scores], dim=-1)[..., : shape[-1]]
    got = class_map(scores)
    assert got.dtype == torch.long and got.shape == scores.shape[:1] + scores.shape[2:]
    np.testing.assert_array_equal(got.numpy(), want)
