"""`reuse-console train` and `eval` as a user runs them: JSON events, tables, errors, NIfTI files."""

from __future__ import annotations

import json

import nibabel as nib
import pytest
from toydata import SPACING, write_toy  # noqa: E402

TINY = ["--arch-config", '{"base_width": 4}', "--batch", "4", "--device", "cpu"]


def test_train_jsonl_then_eval_json_and_table(lab, cli, tmp_path) -> None:
    write_toy(lab)
    code, out, _ = cli("--lab", str(lab.root), "train", "--data", "toy", "--epochs", "2", *TINY, "--progress", "jsonl")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "started" and types[-1] == "finished" and types.count("epoch_end") == 2
    epoch_end = next(e for e in events if e["type"] == "epoch_end")
    assert {"dice_fg", "background", "RV", "MYO", "LV"} <= set(epoch_end["val"])
    assert events[-1]["result"] == "unet-seg-toy"

    code, out, _ = cli(
        "--lab",
        str(lab.root),
        "eval",
        "unet-seg-toy",
        "--json",
        "--device",
        "cpu",
        "--save-predictions",
        str(tmp_path / "nii"),
    )
    assert code == 0
    result = json.loads(out)
    assert result["subjects"] == ["patient004"] and result["absent"] == []
    assert set(result["dice"]) == {"background", "RV", "MYO", "LV"}
    assert set(result["per_subject"]["patient004"]) == set(result["dice"])
    img = nib.load(str(tmp_path / "nii" / "patient004_pred.nii.gz"))
    assert img.header.get_zooms()[:2] == pytest.approx((SPACING[1], SPACING[0]))

    code, out, _ = cli("--lab", str(lab.root), "eval", "unet-seg-toy.last", "--device", "cpu")
    assert code == 0 and "foreground mean" in out and "MYO" in out


def test_train_ae_and_absent_classes_in_the_table(lab, cli) -> None:
    write_toy(lab, name="t1like", present=[True, False, True, False])
    code, _, err = cli(
        "--lab",
        str(lab.root),
        "train",
        "--data",
        "t1like",
        "--epochs",
        "1",
        *TINY,
        "--progress",
        "none",
        "--name",
        "seg1",
    )
    assert code == 0 and "run seg1" in err
    code, out, _ = cli("--lab", str(lab.root), "eval", "seg1", "--device", "cpu")
    assert code == 0 and out.count("absent") == 2
    code, _, _ = cli(
        "--lab",
        str(lab.root),
        "train",
        "--data",
        "t1like",
        "--task",
        "ae",
        "--epochs",
        "1",
        *TINY,
        "--progress",
        "none",
    )
    assert code == 0
    code, out, _ = cli("--lab", str(lab.root), "eval", "unet-ae-t1like", "--json", "--device", "cpu")
    assert code == 0 and set(json.loads(out)) >= {"mse", "psnr"}


def test_user_errors_are_one_line_and_exit_2(lab, cli) -> None:
    code, _, err = cli("--lab", str(lab.root), "train", "--data", "missing", "--progress", "none")
    assert code == 2 and "no data set 'missing'" in err and "Traceback" not in err
    code, _, err = cli("--lab", str(lab.root), "train", "--resume", "nothing", "--progress", "none")
    assert code == 2 and "cannot be resumed" in err
    code, _, err = cli("--lab", str(lab.root), "eval", "nothing")
    assert code == 2 and "nothing" in err
    write_toy(lab)
    code, _, err = cli("--lab", str(lab.root), "train", "--data", "toy", "--arch-config", "{bad", "--progress", "none")
    assert code == 2 and "--arch-config" in err


def test_help_teaches_defaults_and_an_example(cli) -> None:
    code, out, _ = cli("train", "--help")
    assert code == 0 and "Example" in out and "--resume" in out and "--subjects" in out
    code, out, _ = cli("eval", "--help")
    assert code == 0 and "--save-predictions" in out and "absent" in out
