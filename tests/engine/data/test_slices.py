"""Data set files: slices, subject-level splits, normalisation, crop and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from reuse_console.engine.data.slices import (
    CARDIAC_CLASSES,
    SliceSet,
    crop_or_pad,
    load_slices,
    normalise_volume,
    resample_slices,
    split_subjects,
    volume_to_slices,
    write_slices,
)
from reuse_console.store.errors import NotFound, UserError


def _toy(n_subjects: int = 4, per: int = 3, size: int = 8) -> SliceSet:
    n = n_subjects * per
    rng = np.random.default_rng(0)
    return SliceSet(
        name="toy",
        images=rng.normal(size=(n, size, size)).astype(np.float32),
        labels=rng.integers(0, 4, size=(n, size, size)).astype(np.uint8),
        subject=np.repeat(np.arange(n_subjects), per).astype(np.int32),
        subjects=[f"patient{i:03d}" for i in range(1, n_subjects + 1)],
        split=["train", "val", "train", "val"][:n_subjects],
        classes=list(CARDIAC_CLASSES),
        present=[True, False, True, False],
        spacing=(1.5, 1.25),
    )


def test_round_trip_through_the_lab(lab) -> None:
    toy = _toy()
    write_slices(lab.path("datasets", "toy"), toy, source={"format": "test"})
    back = load_slices(lab, "toy")
    np.testing.assert_array_equal(back.images, toy.images)
    np.testing.assert_array_equal(back.labels, toy.labels)
    np.testing.assert_array_equal(back.subject, toy.subject)
    assert back.subjects == toy.subjects and back.split == toy.split
    assert back.present == [True, False, True, False] and back.spacing == (1.5, 1.25)
    entry = lab.resolve("toy")
    assert entry.kind == "datasets" and entry.summary["subjects"] == 4 and entry.summary["slices"] == 12
    assert entry.summary["classes"] == ["background", "MYO"]


def test_missing_data_set_is_not_found(lab) -> None:
    with pytest.raises(NotFound, match="no data set 'nope'"):
        load_slices(lab, "nope")


def test_slice_indices_follow_subjects() -> None:
    toy = _toy()
    assert toy.subjects_in("train") == [0, 2] and toy.subjects_in("val") == [1, 3]
    np.testing.assert_array_equal(toy.slice_indices("train"), [0, 1, 2, 6, 7, 8])
    np.testing.assert_array_equal(toy.slice_indices("train", [2]), [6, 7, 8])
    with pytest.raises(UserError, match="not in split 'train'"):
        toy.slice_indices("train", [1])
    with pytest.raises(UserError, match="unknown split"):
        toy.subjects_in("test")


def test_split_is_by_subject_seeded_and_sized() -> None:
    names = [f"s{i}" for i in range(10)]
    a = split_subjects(names, val_subjects=3, seed=1)
    assert a == split_subjects(names, val_subjects=3, seed=1)
    assert a.count("val") == 3 and a.count("train") == 7
    assert split_subjects(names, val_fraction=0.5, seed=0).count("val") == 5
    assert split_subjects(names, seed=0).count("val") == 2  # default 20%
    assert split_subjects(names, val_subjects=3, seed=2) != a or split_subjects(names, val_subjects=3, seed=3) != a
    with pytest.raises(UserError):
        split_subjects(names, val_subjects=10)
    with pytest.raises(UserError):
        split_subjects(names, val_subjects=1, val_fraction=0.1)


def test_normalise_clips_outliers_then_z_scores() -> None:
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    vol[0, 0, 0] = 1e6  # one hot pixel must not squash the rest
    out = normalise_volume(vol)
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1) < 1e-4
    assert out.max() < 2.0


def test_crop_and_pad_keep_the_centre() -> None:
    stack = np.arange(36, dtype=np.float32).reshape(1, 6, 6)
    np.testing.assert_array_equal(crop_or_pad(stack, 2)[0], [[14, 15], [20, 21]])
    padded = crop_or_pad(stack, 10, fill=-1)
    assert padded.shape == (1, 10, 10) and padded[0, 0, 0] == -1
    np.testing.assert_array_equal(padded[0, 2:8, 2:8], stack[0])


def test_resampling_halves_and_keeps_labels_integral() -> None:
    img = np.array([[[0, 2, 4, 6]]], dtype=np.float32).repeat(4, axis=1)  # (1, 4, 4)
    down = resample_slices(img, (0.5, 0.5), order=1)
    np.testing.assert_allclose(down[0, 0], [1.0, 5.0])  # mean of each pixel pair
    lab = np.array([[[0, 1, 2, 3]]], dtype=np.uint8).repeat(4, axis=1)
    up = resample_slices(lab, (2.0, 2.0), order=0)
    assert up.shape == (1, 8, 8) and set(np.unique(up)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(up[0, 0], [0, 0, 1, 1, 2, 2, 3, 3])


def test_volume_to_slices_orders_rows_by_y_and_spacing() -> None:
    image = np.random.default_rng(0).normal(size=(6, 4, 3))  # X=6, Y=4, Z=3
    label = np.zeros((6, 4, 3), dtype=np.uint8)
    label[5, 1, 2] = 3
    img, lab, spacing = volume_to_slices(image, label, (2.0, 1.0), size=6)
    assert img.shape == (3, 6, 6) and spacing == (1.0, 2.0)
    assert lab[2, 2, 5] == 3 and lab.sum() == 3  # y=1 -> row 2 after padding 4 rows to 6
    _, lab2, spacing2 = volume_to_slices(image, label, (2.0, 1.0), size=6, target_spacing=2.0)
    assert spacing2 == (2.0, 2.0) and lab2.sum() == 3
