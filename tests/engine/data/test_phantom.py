"""The synthetic cardiac phantom: determinism, labels per preset, anatomy, NIfTI files and layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from reuse_console.engine.data.phantom import make_phantom, make_subject
from reuse_console.store.errors import UserError

SCALE = 0.3  # about 50-70 px in-plane: fast, same anatomy in mm


def test_same_seed_same_subject_other_seed_other_subject() -> None:
    a = make_subject("acdc", 5, 0, scale=SCALE)
    b = make_subject("acdc", 5, 0, scale=SCALE)
    c = make_subject("acdc", 6, 0, scale=SCALE)
    np.testing.assert_array_equal(a.frames[0].image, b.frames[0].image)
    np.testing.assert_array_equal(a.frames[1].label, b.frames[1].label)
    assert a.frames[0].image.shape != c.frames[0].image.shape or not np.array_equal(
        a.frames[0].image, c.frames[0].image
    )


def test_subjects_vary_in_size_spacing_and_slices() -> None:
    subjects = [make_subject("acdc", 0, i, scale=SCALE) for i in range(6)]
    shapes = {s.frames[0].image.shape for s in subjects}
    spacings = {round(s.spacing[0], 3) for s in subjects}
    assert len(shapes) > 1 and len(spacings) > 1
    assert all(6 <= s.frames[0].image.shape[2] <= 12 for s in subjects)
    assert all(5.0 <= s.spacing[2] <= 10.0 for s in subjects)


@pytest.mark.parametrize(
    ("preset", "values", "frames"), [("acdc", {0, 1, 2, 3}, 2), ("t1", {0, 2}, 1), ("rvsc", {0, 1}, 2)]
)
def test_labels_per_preset(preset: str, values: set[int], frames: int) -> None:
    found: set[int] = set()
    for i in range(3):
        s = make_subject(preset, 0, i, scale=SCALE)
        assert len(s.frames) == frames
        for f in s.frames:
            assert f.label.dtype == np.uint8 and f.label.shape == f.image.shape
            found |= set(np.unique(f.label).tolist())
    assert found == values


def _radii(label: np.ndarray) -> tuple[float, float]:
    """Mean equivalent-circle cavity radius and wall thickness (pixels) over slices with a cavity."""
    cav = (label == 3).sum(axis=(0, 1)).astype(float)
    myo = (label == 2).sum(axis=(0, 1)).astype(float)
    keep = cav > 10
    r_cav = np.sqrt(cav[keep] / np.pi)
    r_epi = np.sqrt((cav[keep] + myo[keep]) / np.pi)
    return float(r_cav.mean()), float((r_epi - r_cav).mean())


def test_end_systole_has_smaller_cavity_and_thicker_wall() -> None:
    for i in range(3):
        s = make_subject("acdc", 1, i, scale=0.6)
        ed, es = (f.label for f in s.frames)
        assert s.frames[0].phase == "ED" and s.frames[1].phase == "ES"
        assert (es == 3).sum() < (ed == 3).sum()
        assert (es == 1).sum() < (ed == 1).sum()
        (r_ed, wall_ed), (r_es, wall_es) = _radii(ed), _radii(es)
        assert r_es < r_ed and wall_es > wall_ed


def test_background_holds_blood_bright_distractors() -> None:
    """Vessels and atria as bright as the LV blood pool sit in unlabelled background."""
    bright_outside = []
    for i in range(4):
        s = make_subject("acdc", 0, i, scale=0.5)
        f = s.frames[0]
        blood = np.median(f.image[f.label == 3])
        heart = f.label > 0
        bright_outside.append(int(((f.image > 0.8 * blood) & ~heart).sum()))
    assert min(bright_outside) > 50


def test_t1_has_another_contrast_and_scale() -> None:
    """Cine: blood pool far brighter than myocardium; T1 map: myocardium ~1000 ms, fat darkest."""
    acdc = make_subject("acdc", 0, 0, scale=0.6).frames[0]
    t1 = make_subject("t1", 0, 0, scale=0.6).frames[0]
    assert 750 < np.median(t1.image[t1.label == 2]) < 1300
    assert np.median(acdc.image[acdc.label == 3]) > 1.8 * np.median(acdc.image[acdc.label == 2])


def test_acdc_layout_files_affine_and_info(tmp_path: Path) -> None:
    out = tmp_path / "acdc"
    made = make_phantom(out, preset="acdc", subjects=2, layout="acdc", seed=3, scale=SCALE)
    s = made[0]
    folder = out / "patient001"
    info = dict(line.split(": ") for line in (folder / "Info.cfg").read_text().splitlines())
    assert set(info) == {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}
    assert int(info["ED"]) == 1 and 1 < int(info["ES"]) <= int(info["NbFrame"])
    assert info["Group"] in {"NOR", "MINF", "DCM", "HCM", "RV"}
    ed = nib.load(folder / f"patient001_frame{int(info['ED']):02d}.nii.gz")
    gt = nib.load(folder / f"patient001_frame{int(info['ES']):02d}_gt.nii.gz")
    sx, sy, sz = s.spacing
    np.testing.assert_allclose(ed.header.get_zooms(), (sx, sy, sz), rtol=1e-5)
    np.testing.assert_allclose(np.diag(ed.affine)[:3], (sx, sy, sz), rtol=1e-5)
    centre = ed.affine @ np.array([(n - 1) / 2 for n in ed.shape] + [1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-4)  # origin at the volume centre
    assert int(ed.header["qform_code"]) == 1 and int(ed.header["sform_code"]) == 1
    assert ed.header.get_xyzt_units() == ("mm", "sec")
    assert gt.shape == ed.shape and np.issubdtype(np.asanyarray(gt.dataobj).dtype, np.integer)
    cine = nib.load(folder / "patient001_4d.nii.gz")
    assert cine.shape == ed.shape + (int(info["NbFrame"]),)
    np.testing.assert_allclose(cine.header.get_zooms()[:3], (sx, sy, sz), rtol=1e-5)
    # the cine's ED frame is the ED volume
    np.testing.assert_array_equal(np.asanyarray(cine.dataobj)[..., 0], np.asanyarray(ed.dataobj))


def test_subject_does_not_depend_on_subject_count(tmp_path: Path) -> None:
    make_phantom(tmp_path / "two", subjects=2, seed=4, scale=SCALE, cine=False)
    make_phantom(tmp_path / "three", subjects=3, seed=4, scale=SCALE, cine=False)
    for name in ("patient002_frame01.nii.gz", "patient002_frame01_gt.nii.gz"):
        a = np.asanyarray(nib.load(tmp_path / "two" / "patient002" / name).dataobj)
        b = np.asanyarray(nib.load(tmp_path / "three" / "patient002" / name).dataobj)
        np.testing.assert_array_equal(a, b)


def test_nnunet_layout_dataset_json(tmp_path: Path) -> None:
    out = tmp_path / "nn"
    made = make_phantom(out, preset="t1", subjects=2, layout="nnunet", seed=0, scale=SCALE)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "MYO": 1}  # consecutive, as nnU-Net requires
    assert meta["channel_names"] == {"0": "T1map"} and meta["file_ending"] == ".nii.gz"
    images = sorted(p.name for p in (out / "imagesTr").iterdir())
    labels = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert meta["numTraining"] == len(images) == len(labels) == sum(len(s.frames) for s in made)
    assert images[0] == "patient001_frame01_0000.nii.gz" and labels[0] == "patient001_frame01.nii.gz"
    lab = np.asanyarray(nib.load(out / "labelsTr" / labels[0]).dataobj)
    assert set(np.unique(lab).tolist()) == {0, 1}


def test_refuses_bad_options(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(UserError, match="not an empty folder"):
        make_phantom(tmp_path / "full", subjects=1, scale=SCALE)
    with pytest.raises(UserError, match="unknown phantom preset"):
        make_phantom(tmp_path / "a", preset="ct", subjects=1)
    with pytest.raises(UserError, match="unknown layout"):
        make_phantom(tmp_path / "b", layout="bids", subjects=1)
    assert (tmp_path / "full" / "x").read_text() == "keep me"
