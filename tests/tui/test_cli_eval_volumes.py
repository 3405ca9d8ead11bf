"""`eval` as the field reports it: per-volume Dice (ED and ES apart) against MONAI's compute_dice on
the saved files, and predictions on the source grid that a viewer overlays (a nibabel round trip)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from swap_lab import make_checkpoint

from reuse_console.engine.data.importer import import_dataset
from reuse_console.engine.data.phantom import make_phantom

pytest.importorskip("monai")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom") / "acdc"
    make_phantom(out, preset="acdc", subjects=3, scale=0.3, seed=5, cine=False)
    return out


def _eval(cli, lab, *args: str) -> dict:  # type: ignore[no-untyped-def]
    code, out, err = cli("--lab", str(lab.root), "eval", "seg", "--data", "acdc", "--split", "all", "--json",
                         "--device", "cpu", *args)  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def _monai_dice(pred: np.ndarray, ref: np.ndarray, ignore_empty: bool) -> np.ndarray:
    import torch
    from monai.metrics import compute_dice

    def onehot(x: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), 4).movedim(-1, 0)[None].float()

    return compute_dice(onehot(pred), onehot(ref), include_background=True, ignore_empty=ignore_empty)[0].numpy()


def test_per_volume_dice_equals_monai_on_the_saved_files(lab, cli, phantom: Path, tmp_path: Path) -> None:
    import_dataset(lab, phantom, fmt="acdc", name="acdc", size=80)
    make_checkpoint(lab, "seg", seed=3, size=80)  # untrained: its errors make every class count
    volumes = [f"patient00{i}_{p}" for i in (1, 2, 3) for p in ("ED", "ES")]
    for empty, ignore in (("one", False), ("ignore", True)):
        out_dir = tmp_path / empty
        got = _eval(cli, lab, "--per", "volume", "--empty", empty, "--grid", "evaluated", "--save-predictions",
                    str(out_dir))  # fmt: skip
        assert got["dice_per"] == "volume" and sorted(got["per_volume"]) == volumes
        for volume in volumes:
            pred = np.asarray(nib.load(str(out_dir / f"{volume}_pred.nii.gz")).dataobj)
            ref = np.asarray(nib.load(str(out_dir / f"{volume}_gt.nii.gz")).dataobj)
            expected = _monai_dice(pred, ref, ignore)
            row = got["per_volume"][volume]
            for c, name in enumerate(["background", "RV", "MYO", "LV"]):
                if np.isnan(expected[c]):
                    assert row[name] is None
                else:
                    assert row[name] == pytest.approx(float(expected[c]), abs=1e-6), (volume, name)
        # tables: per phase and per subject means of the volumes, by hand
        rv = {v: got["per_volume"][v]["RV"] for v in volumes}
        for phase in ("ED", "ES"):
            values = [x for v, x in rv.items() if v.endswith(phase) and x is not None]
            assert got["by_phase"][phase]["RV"] == pytest.approx(np.mean(values))
        first = [x for v, x in rv.items() if v.startswith("patient001") and x is not None]
        assert got["per_subject"]["patient001"]["RV"] == pytest.approx(np.mean(first))
    # the default stays per subject: both frames' voxels at once
    by_subject = _eval(cli, lab)
    assert by_subject["dice_per"] == "subject" and sorted(by_subject["per_subject"]) == ["patient001", "patient002",
                                                                                         "patient003"]  # fmt: skip


def test_source_grid_round_trip_with_nibabel(lab, cli, phantom: Path, tmp_path: Path) -> None:
    # 5 mm pixels (the phantom's are 4.8 to 5.8 mm at this scale): every volume is resampled, then
    # padded to 80 (a field of view of at most 390 mm is 78 pixels)
    import_dataset(lab, phantom, fmt="acdc", name="acdc", size=80, spacing=5.0)
    make_checkpoint(lab, "seg", seed=3, size=32)  # trained at another size: predictions are resized back
    got = _eval(cli, lab, "--save-predictions", str(tmp_path / "nii"))
    assert got["grid"] == "source" and len(got["files"]) == 12
    for patient in sorted(p for p in phantom.iterdir() if p.is_dir()):
        info = dict(line.split(": ") for line in (patient / "Info.cfg").read_text().splitlines())
        for phase in ("ED", "ES"):
            source = nib.load(str(patient / f"{patient.name}_frame{int(info[phase]):02d}_gt.nii.gz"))
            gt = nib.load(str(tmp_path / "nii" / f"{patient.name}_{phase}_gt.nii.gz"))
            pred = nib.load(str(tmp_path / "nii" / f"{patient.name}_{phase}_pred.nii.gz"))
            np.testing.assert_array_equal(np.asarray(gt.dataobj), np.asarray(source.dataobj))
            for img in (gt, pred):
                assert img.shape == source.shape
                np.testing.assert_allclose(img.affine, source.affine, atol=1e-5)
                assert img.header.get_zooms() == pytest.approx(source.header.get_zooms())
            assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}


def test_show_prints_each_volumes_provenance(lab, cli, phantom: Path) -> None:
    import_dataset(lab, phantom, fmt="acdc", name="acdc", size=80, spacing=5.0)
    code, out, _ = cli("--lab", str(lab.root), "show", "acdc", "--json")
    assert code == 0
    volumes = json.loads(out)["volumes"]
    ed = next(v for v in volumes if v["volume"] == "patient002_ED")
    source = nib.load(str(phantom / "patient002" / "patient002_frame01.nii.gz"))
    assert ed["files"] == [str(phantom / "patient002" / "patient002_frame01.nii.gz"),
                           str(phantom / "patient002" / "patient002_frame01_gt.nii.gz")]  # fmt: skip
    assert ed["placement"]["shape"] == list(source.shape)
    np.testing.assert_allclose(ed["affine"], source.affine, atol=1e-6)
    assert ed["spacing"] == pytest.approx(source.header.get_zooms())
    code, out, _ = cli("--lab", str(lab.root), "show", "acdc")
    assert code == 0 and "patient002_ED" in out and "2 nii.gz" in out  # its image and its label


def test_unlabelled_rvsc_test_set_gets_predictions_only(lab, cli, tmp_path: Path) -> None:
    from dicom_replica import make_rvsc

    root = make_rvsc(tmp_path / "src", contours=False, set_name="Test1Set")
    import_dataset(lab, root, fmt="rvsc", name="acdc", size=16, val_subjects=0)
    make_checkpoint(lab, "seg", seed=3, size=16)
    code, _, err = cli("--lab", str(lab.root), "eval", "seg", "--data", "acdc", "--split", "all", "--device", "cpu")
    assert code == 2 and "has no labels" in err
    got = _eval(cli, lab, "--save-predictions", str(tmp_path / "nii"))
    assert "dice" not in got and got["labelled"] is False
    assert sorted(Path(f).name for f in got["files"]) == [f"patient01_t0{t}_pred.nii.gz" for t in range(3)]
    pred = nib.load(got["files"][0])
    assert pred.shape == (12, 10, 2)  # the DICOM series' own grid: columns, rows, slices
