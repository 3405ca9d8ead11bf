"""RVSC and DICOM import: a hand-made replica (pydicom alone), the phantom's rvsc layout, bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dicom_replica import (
    COLS,
    INTERCEPT,
    ROWS,
    SLOPE,
    circle_mask,
    make_rvsc,
    square_mask,
    stored_pixels,
    write_image,
    write_points,
)

from reuse_console.engine.data.classes import map_classes
from reuse_console.engine.data.formats import load_volume
from reuse_console.engine.data.importer import import_dataset
from reuse_console.engine.data.phantom import make_phantom, make_subject
from reuse_console.engine.data.slices import load_slices, read_dataset_info
from reuse_console.engine.data.sources import read_source
from reuse_console.engine.data.volumes import IGNORE
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

pytest.importorskip("pydicom")
pytest.importorskip("skimage")


def _volumes(root: Path, fmt: str = "rvsc"):  # type: ignore[no-untyped-def]
    source = read_source(root, fmt)
    class_map = map_classes(source.declared)
    return source, [load_volume(ref, class_map) for ref in source.volumes]


def test_replica_volumes_by_phase_geometry_and_rescale(tmp_path: Path) -> None:
    make_rvsc(tmp_path)
    source, volumes = _volumes(tmp_path)  # the folder above TrainingSet is fine
    assert [v.volume for v in source.volumes] == ["patient01_ED", "patient01_ES"]
    assert [v.phase for v in source.volumes] == ["ED", "ES"]
    ed, es = volumes
    # slices along the normal: file slice 1 (z = -8) comes first; values = stored x slope + intercept
    for volume, t in ((ed, 0), (es, 2)):
        assert volume.image.shape == (COLS, ROWS, 2)
        for k, file_slice in enumerate((1, 0)):
            expected = stored_pixels(file_slice, t).astype(np.float64) * SLOPE + INTERCEPT
            np.testing.assert_array_equal(volume.image[:, :, k].T, expected)
    for k in range(2):
        np.testing.assert_array_equal(ed.label[:, :, k].T, square_mask())  # RV = class 1
        np.testing.assert_array_equal(es.label[:, :, k].T, circle_mask())
    assert ed.spacing == pytest.approx((1.25, 1.5, 8.0))
    # by hand: x along +L (RAS -x) by 1.25, y along +P (RAS -y) by 1.5, z up 8 mm, origin (-20, -30, -8) LPS
    expected_affine = np.array([[-1.25, 0, 0, 20.0], [0, -1.5, 0, 30.0], [0, 0, 8.0, -8.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(ed.affine, expected_affine)
    assert ed.info["epicardium"] == 1 and es.info["epicardium"] == 0


def test_replica_import_stores_labels_and_provenance(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    lab = Lab(tmp_path / "lab")
    slices = import_dataset(lab, root, fmt="auto", name="rv", size=16, val_subjects=0)
    assert slices.classes == ["background", "RV", "MYO", "LV"] and slices.present == [True, True, False, False]
    assert slices.volumes == ["patient01_ED", "patient01_ES"] and len(slices) == 4
    # 10 x 12 padded to 16 x 16: rows start at 3, columns at 2
    for i, mask in enumerate([square_mask(), square_mask(), circle_mask(), circle_mask()]):
        np.testing.assert_array_equal(slices.labels[i, 3:13, 2:14], mask)
        assert slices.labels[i].sum() == mask.sum()
    info = read_dataset_info(lab.path("datasets", "rv"))
    ed = info.volume_info[0]
    assert ed["volume"] == "patient01_ED" and ed["phase"] == "ED" and ed["orientation"] == "LPS"
    assert sum(f.endswith(".dcm") for f in ed["files"]) == 2
    assert sum(f.endswith("-icontour-manual.txt") for f in ed["files"]) == 2
    assert ed["placement"] == {"shape": [12, 10, 2], "resampled": [10, 12], "rows": [0, 3, 10], "columns": [0, 2, 12]}


def test_phantom_rvsc_layout_labels_are_the_phantoms(tmp_path: Path) -> None:
    make_phantom(tmp_path / "rv", preset="rvsc", subjects=2, layout="rvsc", scale=0.4, seed=3)
    source, volumes = _volumes(tmp_path / "rv" / "TrainingSet", fmt="auto")
    assert source.format == "rvsc"
    assert [v.volume for v in source.volumes] == ["patient01_ED", "patient01_ES", "patient02_ED", "patient02_ES"]
    for i in range(2):
        subject = make_subject("rvsc", 3, i, scale=0.4)
        for frame, volume in zip(subject.frames, volumes[2 * i : 2 * i + 2]):
            with_rv = [k for k in range(frame.label.shape[2]) if (frame.label[:, :, k] == 1).any()]
            # one i-contour per image (as in RVSC): the largest (8-connected) RV region of each slice
            expected = np.stack([_largest_region(frame.label[:, :, k] == 1) for k in with_rv], axis=2)
            np.testing.assert_array_equal(volume.label, expected)
            np.testing.assert_array_equal(volume.image, frame.image[:, :, with_rv].astype(np.float32))
            assert volume.spacing == pytest.approx(subject.spacing)


def _largest_region(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    regions, n = ndimage.label(mask, structure=np.ones((3, 3)))  # 8-connected
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    return (regions == 1 + int(np.argmax(sizes))).astype(np.uint8)


def test_test_set_imports_without_labels(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path, contours=False, set_name="Test1Set")
    lab = Lab(tmp_path / "lab")
    slices = import_dataset(lab, root, fmt="rvsc", name="t1", size=16, val_subjects=0)
    assert slices.volumes == ["patient01_t00", "patient01_t01", "patient01_t02"]
    assert (slices.labels == IGNORE).all()
    assert load_slices(lab, "t1").attrs["source"]["labelled"] is False


def _refused(tmp_path: Path, root: Path, fragment: str, fmt: str = "rvsc") -> str:
    lab = Lab(tmp_path / "lab")
    with pytest.raises(UserError, match=fragment) as caught:
        import_dataset(lab, root, fmt=fmt, name="x", size=16, val_subjects=0)
    assert not list(lab.folder("datasets").glob("*.h5"))
    return str(caught.value)


def test_contour_for_a_missing_image(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    write_points(root / "patient01" / "P01contours-manual" / "P01-0042-icontour-manual.txt", [(1, 1), (2, 1), (2, 2)])
    assert "P01-0042-icontour-manual.txt" in _refused(tmp_path, root, "not in the patient's dicom folder")


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    bad = write_image(root / "patient01" / "P01dicom" / "P01-0001.dcm", stored_pixels(0, 0), pixel_data=False)
    assert str(bad) in _refused(tmp_path, root, "without pixel data")


def test_mixed_sizes_in_one_volume(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    wide = np.zeros((ROWS, COLS + 2), dtype=np.uint16)
    write_image(root / "patient01" / "P01dicom" / "P01-0004.dcm", wide, position=(-20.0, -30.0, -8.0))
    assert "P01-0004.dcm" in _refused(tmp_path, root, "10x14 image in patient01 ED of 10x12")


def test_compressed_without_a_decoder(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    write_image(root / "patient01" / "P01dicom" / "P01-0001.dcm", stored_pixels(0, 0), compressed=True)
    message = _refused(tmp_path, root, "compressed transfer syntax")
    assert "P01-0001.dcm" in message and "JPEG 2000" in message


def test_not_dicom(tmp_path: Path) -> None:
    root = make_rvsc(tmp_path / "src")
    (root / "patient01" / "P01dicom" / "P01-0002.dcm").write_bytes(b"not a dicom file at all")
    assert "P01-0002.dcm" in _refused(tmp_path, root, "not a readable DICOM file")


def _series(folder: Path, slices: int = 3) -> None:
    for k in range(slices):
        write_image(folder / f"img{k}.dcm", stored_pixels(k, 0), position=(0.0, 0.0, 5.0 * k), instance=k + 1)


def test_dicom_series_with_a_flipped_nifti_label(tmp_path: Path) -> None:
    import nibabel as nib

    root = tmp_path / "series"
    _series(root / "case01")
    _series(root / "case02")
    grid = _volumes(root, fmt="dicom")[1][0]  # the series' own grid, to build its labels from
    truth = np.zeros(grid.image.shape, dtype=np.uint8)  # (x, y, z)
    truth[2:5, 3:7, 1] = 3  # LV
    truth[6:9, 1:4, 2] = 1  # RV
    for case in ("case01", "case02"):
        # written flipped along x and with x and y swapped: the reader must undo both
        flipped = np.transpose(truth[::-1], (1, 0, 2))
        flip = np.array([[0, 1, 0, 0], [-1, 0, 0, truth.shape[0] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        nib.save(nib.Nifti1Image(flipped, grid.affine @ np.linalg.inv(flip)), str(root / case / "label.nii.gz"))
    source, volumes = _volumes(root, fmt="dicom")
    assert source.subjects == ["case01", "case02"]
    np.testing.assert_array_equal(volumes[0].label, truth)
    assert volumes[0].spacing == pytest.approx((1.25, 1.5, 5.0))
    (root / "case02" / "label.nii.gz").unlink()
    with pytest.raises(UserError, match="no label NIfTI for volume case02"):
        read_source(root, "dicom")


def test_dicom_series_label_on_another_grid(tmp_path: Path) -> None:
    import nibabel as nib

    root = tmp_path / "series"
    _series(root / "case01")
    nib.save(nib.Nifti1Image(np.zeros((COLS, ROWS, 3), np.uint8), np.eye(4)), str(root / "case01" / "label.nii.gz"))
    assert "label.nii.gz" in _refused(tmp_path, root, "does not cover the series' grid", fmt="dicom")


def test_dicom_series_unlabelled(tmp_path: Path) -> None:
    root = tmp_path / "series"
    _series(root / "case01")
    shutil.copytree(root / "case01", root / "case02")
    source, volumes = _volumes(root, fmt="dicom")
    assert [v.volume for v in source.volumes] == ["case01", "case02"] and volumes[0].label is None
