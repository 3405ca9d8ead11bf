"""Dice per volume and per subject, both empty rules, against MONAI's compute_dice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reuse_console.engine.evaluation.metrics import DiceAccumulator, DiceResult, dice_from_counts, group_counts

monai_metrics = pytest.importorskip("monai.metrics")


def _onehot(x: np.ndarray, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), classes).movedim(-1, 0)[None].float()


def _monai(pred: np.ndarray, ref: np.ndarray, ignore_empty: bool) -> np.ndarray:
    return monai_metrics.compute_dice(_onehot(pred, 4), _onehot(ref, 4), include_background=True,
                                      ignore_empty=ignore_empty)[0].numpy()  # fmt: skip


def test_volumes_and_subjects_match_monai_with_both_empty_rules() -> None:
    rng = np.random.default_rng(7)
    # 3 subjects x 2 volumes (ED, ES) x 3 slices; class 3 missing from some references
    volume_of = np.repeat(np.arange(6), 3)
    subject_of_volume = np.array([0, 0, 1, 1, 2, 2])
    ref = rng.integers(0, 4, size=(18, 8, 8))
    ref[volume_of == 1] = np.where(ref[volume_of == 1] == 3, 0, ref[volume_of == 1])  # empty, predicted
    ref[volume_of == 4] = np.where(ref[volume_of == 4] == 3, 0, ref[volume_of == 4])  # empty, not predicted
    pred = rng.integers(0, 4, size=(18, 8, 8))
    pred[volume_of == 4] = np.where(pred[volume_of == 4] == 3, 1, pred[volume_of == 4])
    acc = DiceAccumulator(4, 6)
    for start in (0, 5, 10, 15):  # batches that cut across volumes
        part = slice(start, start + 5)
        acc.update(torch.from_numpy(pred[part]), torch.from_numpy(ref[part]), volume_of[part])
    for empty, ignore in (("one", False), ("ignore", True)):
        per_volume = dice_from_counts(acc.counts, empty)
        per_subject = dice_from_counts(group_counts(acc.counts, subject_of_volume, 3), empty)
        for v in range(6):
            rows = volume_of == v
            np.testing.assert_allclose(per_volume[v], _monai(pred[rows], ref[rows], ignore), atol=1e-6)
        for s in range(3):
            rows = np.isin(volume_of, np.flatnonzero(subject_of_volume == s))
            np.testing.assert_allclose(per_subject[s], _monai(pred[rows], ref[rows], ignore), atol=1e-6)
    assert per_volume[1, 3] != per_volume[1, 3] and per_volume[4, 3] != per_volume[4, 3]  # NaN under ignore
    assert dice_from_counts(acc.counts, "one")[1, 3] == 0.0 and dice_from_counts(acc.counts, "one")[4, 3] == 1.0


def test_ignore_leaves_empty_references_out_of_the_means() -> None:
    per_volume = np.array([[0.9, 0.5, np.nan, 0.2], [0.7, 0.3, 0.6, np.nan]])
    result = DiceResult(["background", "RV", "MYO", "LV"], [True] * 4, ["a", "b"], per_volume)
    by_class = result.by_class()
    assert by_class["MYO"] == pytest.approx(0.6) and by_class["LV"] == pytest.approx(0.2)
    assert result.dice_fg == pytest.approx((0.4 + 0.6 + 0.2) / 3)
    assert result.by_class(result.std)["MYO"] == 0.0
    nothing = DiceResult(["background", "RV"], [True, True], ["a"], np.array([[1.0, np.nan]]))
    assert nothing.by_class()["RV"] is None and nothing.dice_fg != nothing.dice_fg  # NaN: no reference anywhere
