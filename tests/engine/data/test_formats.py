"""Readers and import: both phantom layouts come back with the same subjects and labels, class
names map to the cardiac classes, and every kind of bad input is one clear error with nothing
written to the lab."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from reuse_console.engine.data.formats import canonical_class, map_classes, subject_of
from reuse_console.engine.data.importer import import_dataset
from reuse_console.engine.data.phantom import make_phantom, make_subject
from reuse_console.engine.data.slices import load_slices
from reuse_console.store.errors import UserError

SCALE = 0.3
SEED = 2


def _save(path: Path, data: np.ndarray, zooms: tuple[float, ...] = (1.5, 1.5, 8.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag(list(zooms[:3]) + [1.0]))
    img.header.set_zooms(zooms[: data.ndim] if data.ndim <= len(zooms) else zooms + (1.0,) * (data.ndim - len(zooms)))
    nib.save(img, str(path))
    return path


def _folders(
    root: Path, n: int = 2, shape: tuple[int, ...] = (20, 18, 3), labels: tuple[int, ...] = (0, 1, 2, 3)
) -> Path:
    """images/ + labels/ with `n` small volumes whose labels use the values `labels`."""
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"case{i:02d}.nii.gz"
        _save(root / "images" / name, rng.normal(100, 20, size=shape).astype(np.float32))
        lab = rng.choice(np.array(labels, dtype=np.uint8), size=shape)
        _save(root / "labels" / name, lab)
    return root


def _crop_counts(label: np.ndarray, size: int, classes: int = 4) -> np.ndarray:
    """Voxels per class inside the centre size x size window of (x, y, z), computed by hand."""
    nx, ny = label.shape[:2]
    x0, y0 = max((nx - size) // 2, 0), max((ny - size) // 2, 0)
    window = label[x0 : x0 + size, y0 : y0 + size]
    return np.bincount(window.ravel(), minlength=classes)[:classes]


@pytest.mark.parametrize("layout", ["acdc", "nnunet"])
@pytest.mark.parametrize("size", [32, 96])  # crop and pad
def test_phantom_imports_back_with_the_same_labels(tmp_path: Path, lab, layout: str, size: int) -> None:
    out = tmp_path / layout
    make_phantom(out, preset="acdc", subjects=3, layout=layout, seed=SEED, scale=SCALE, cine=False)
    slices = import_dataset(lab, out, fmt=layout, name=f"ph-{layout}", size=size, val_subjects=1)
    assert slices.subjects == ["patient001", "patient002", "patient003"]
    assert slices.classes == ["background", "RV", "MYO", "LV"] and slices.present == [True] * 4
    for i in range(len(slices.subjects)):
        generated = make_subject("acdc", SEED, i, scale=SCALE)
        expected = sum(_crop_counts(f.label, size) for f in generated.frames)
        mine = slices.slice_indices("all", [i])
        got = np.bincount(slices.labels[mine].ravel(), minlength=4)
        np.testing.assert_array_equal(got[1:], expected[1:])
        assert len(mine) == sum(f.label.shape[2] for f in generated.frames)
    stored = load_slices(lab, f"ph-{layout}")
    assert stored.images.shape == (len(slices), size, size) and stored.images.dtype == np.float32
    assert stored.split.count("val") == 1


def test_split_keeps_subjects_whole(tmp_path: Path, lab) -> None:
    out = tmp_path / "acdc"
    make_phantom(out, subjects=5, seed=0, scale=SCALE, cine=False)
    s = import_dataset(lab, out, name="split", size=32, val_subjects=2, seed=1)
    train, val = set(s.subject[s.slice_indices("train")]), set(s.subject[s.slice_indices("val")])
    assert not train & val and len(val) == 2 and len(train) == 3
    assert len(s.slice_indices("train")) + len(s.slice_indices("val")) == len(s)
    # both frames of a subject are in the data set and share its subject index
    for i in range(5):
        names = {s.volumes[v] for v in s.volume[s.slice_indices("all", [i])]}
        assert names == {f"{s.subjects[i]}_ED", f"{s.subjects[i]}_ES"}


@pytest.mark.parametrize(
    ("preset", "layout", "present", "values"),
    [
        ("t1", "nnunet", [True, False, True, False], {0, 2}),
        ("t1", "acdc", [True, False, True, False], {0, 2}),
        ("rvsc", "acdc", [True, True, False, False], {0, 1}),
        ("rvsc", "nnunet", [True, True, False, False], {0, 1}),
    ],
)
def test_partial_label_sets_land_on_cardiac_classes(tmp_path: Path, lab, preset, layout, present, values) -> None:
    out = tmp_path / "p"
    make_phantom(out, preset=preset, subjects=2, layout=layout, seed=0, scale=SCALE, cine=False)
    s = import_dataset(lab, out, name="p", size=32)
    assert s.classes == ["background", "RV", "MYO", "LV"] and s.present == present
    assert set(np.unique(s.labels).tolist()) == values


def test_resampling_to_a_spacing(tmp_path: Path, lab) -> None:
    out = tmp_path / "acdc"
    make_phantom(out, subjects=2, seed=0, scale=SCALE, cine=False)
    s = import_dataset(lab, out, name="r", size=64, spacing=2.5)
    assert s.spacing == (2.5, 2.5)
    # the heart keeps its area in mm^2 (to within edge effects of nearest resampling)
    gen = make_subject("acdc", 0, 0, scale=SCALE)
    mm2_before = sum((f.label == 3).sum() for f in gen.frames) * gen.spacing[0] * gen.spacing[1]
    mm2_after = (s.labels[s.slice_indices("all", [0])] == 3).sum() * 2.5 * 2.5
    assert abs(mm2_after - mm2_before) / mm2_before < 0.15


def test_folders_with_named_classes(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f", labels=(0, 1))
    s = import_dataset(lab, root, fmt="folders", name="f", size=32, classes=["Background", "LV blood pool"])
    assert s.present == [True, False, False, True]
    assert set(np.unique(s.labels).tolist()) == {0, 3}
    other = import_dataset(lab, root, fmt="folders", name="g", size=32, classes=["background", "tumour"])
    assert other.classes == ["background", "tumour"] and other.present == [True, True]


def test_class_aliases() -> None:
    assert canonical_class("Myocardium") == "MYO" and canonical_class("RV_cavity") == "RV"
    assert canonical_class("left ventricle") == "LV" and canonical_class("liver") is None
    assert canonical_class("MLV") == "MYO" and canonical_class("LVC") == "LV"  # nnU-Net's ACDC names
    cm = map_classes({0: "background", 1: "myocardium", 2: "RV"})
    assert list(cm.lut[:3]) == [0, 2, 1] and cm.present == [True, True, True, False]
    with pytest.raises(UserError, match="both name class MYO"):
        map_classes({0: "background", 1: "MYO", 2: "myocardium"})
    assert subject_of("patient001_frame12") == "patient001" and subject_of("case_7") == "case_7"


# ---- bad input: one clear error naming the file, nothing in the lab -------------------------


def _assert_rejected(lab, root: Path, match: str, fmt: str = "folders", **kw) -> None:
    with pytest.raises(UserError, match=match):
        import_dataset(lab, root, fmt=fmt, name="bad", size=32, **kw)
    folder = lab.root / "datasets"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_shape_mismatch(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    _save(root / "labels" / "case01.nii.gz", np.zeros((20, 17, 3), dtype=np.uint8))
    _assert_rejected(lab, root, r"case01\.nii\.gz: label shape \(20, 17, 3\) does not match image shape \(20, 18, 3\)")


def test_label_values_outside_declared_classes(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f", labels=(0, 1, 5))
    _assert_rejected(lab, root, r"labels/case00\.nii\.gz: label values \[5\] outside the declared classes")


def test_non_integer_labels(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    _save(root / "labels" / "case00.nii.gz", np.full((20, 18, 3), 0.5, dtype=np.float32))
    _assert_rejected(lab, root, r"case00\.nii\.gz: non-integer label values \(e\.g\. 0\.5\)")


def test_truncated_nifti(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f", shape=(40, 40, 4))
    path = root / "images" / "case01.nii.gz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _assert_rejected(lab, root, r"images/case01\.nii\.gz: cannot read NIfTI")


def test_corrupt_nifti(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    (root / "labels" / "case00.nii.gz").write_bytes(gzip.compress(b"this is not a nifti header" * 20))
    _assert_rejected(lab, root, r"labels/case00\.nii\.gz: cannot read NIfTI")


def test_missing_label_file_folders(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    (root / "labels" / "case01.nii.gz").unlink()
    _assert_rejected(lab, root, r"labels/case01\.nii\.gz: missing label file")


def test_missing_label_file_acdc(tmp_path: Path, lab) -> None:
    out = tmp_path / "acdc"
    make_phantom(out, subjects=2, seed=0, scale=SCALE, cine=False)
    next((out / "patient002").glob("*_gt.nii.gz")).unlink()
    _assert_rejected(lab, out, r"patient002_frame\d\d_gt\.nii\.gz: missing label file", fmt="acdc")


def test_missing_label_file_nnunet(tmp_path: Path, lab) -> None:
    out = tmp_path / "nn"
    make_phantom(out, subjects=2, layout="nnunet", seed=0, scale=SCALE)
    (out / "labelsTr" / "patient001_frame01.nii.gz").unlink()
    _assert_rejected(lab, out, r"labelsTr/patient001_frame01\.nii\.gz: missing label file", fmt="nnunet")


def test_empty_folders(tmp_path: Path, lab) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_rejected(lab, empty, r"empty: empty folder", fmt="acdc")
    (empty / "images").mkdir()
    (empty / "labels").mkdir()
    _assert_rejected(lab, empty, r"images: empty folder")


def test_4d_image_where_3d_expected(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    _save(root / "images" / "case00.nii.gz", np.zeros((20, 18, 3, 5), dtype=np.float32), (1.5, 1.5, 8.0, 0.03))
    _assert_rejected(
        lab, root, r"images/case00\.nii\.gz: 4D image of shape \(20, 18, 3, 5\) where a 3D volume is expected"
    )


def test_existing_data_set_name(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    import_dataset(lab, root, fmt="folders", name="taken", size=32)
    before = (lab.root / "datasets" / "taken.h5").read_bytes()
    with pytest.raises(UserError, match="'taken' already exists"):
        import_dataset(lab, root, fmt="folders", name="taken", size=32)
    assert (lab.root / "datasets" / "taken.h5").read_bytes() == before


def test_bad_dataset_json(tmp_path: Path, lab) -> None:
    out = tmp_path / "nn"
    make_phantom(out, subjects=1, layout="nnunet", seed=0, scale=SCALE)
    meta = json.loads((out / "dataset.json").read_text())
    meta["labels"]["RV"] = [1, 2]
    (out / "dataset.json").write_text(json.dumps(meta))
    _assert_rejected(lab, out, r"dataset\.json: region-based label 'RV' is not supported", fmt="nnunet")
    (out / "dataset.json").write_text("{not json")
    _assert_rejected(lab, out, r"dataset\.json: not valid JSON", fmt="nnunet")


def test_bad_size_and_undetectable_layout(tmp_path: Path, lab) -> None:
    root = _folders(tmp_path / "f")
    with pytest.raises(UserError, match="multiple of 16"):
        import_dataset(lab, root, name="x", size=50)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("hi")
    _assert_rejected(lab, tmp_path / "odd", "cannot tell its layout", fmt="auto")


def test_acdc_database_folder_and_format_detection(tmp_path: Path, lab) -> None:
    """Real ACDC unpacks to database/training/patientNNN: the parent folder works too."""
    make_phantom(tmp_path / "database" / "training", subjects=2, seed=0, scale=SCALE, cine=False)
    make_phantom(tmp_path / "nn", subjects=1, layout="nnunet", seed=0, scale=SCALE)
    _folders(tmp_path / "f")
    assert import_dataset(lab, tmp_path / "database", name="a", size=32).subjects == ["patient001", "patient002"]
    assert load_slices(lab, "a").attrs["source"]["format"] == "acdc"
    import_dataset(lab, tmp_path / "nn", name="n", size=32)
    import_dataset(lab, tmp_path / "f", name="f", size=32)
    assert [load_slices(lab, n).attrs["source"]["format"] for n in ("n", "f")] == ["nnunet", "folders"]
