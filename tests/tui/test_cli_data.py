"""`reuse-console data phantom` and `data import` as a user runs them: output, exit codes, lab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_phantom_then_import_then_list(tmp_path: Path, cli) -> None:
    lab = str(tmp_path / "lab")
    out = tmp_path / "ph"
    code, stdout, _ = cli(
        "data",
        "phantom",
        "--subjects",
        "3",
        "--scale",
        "0.3",
        "--out",
        str(out),
        "--json",
        "--progress",
        "none",
    )
    assert code == 0
    made = json.loads(stdout)
    assert [s["name"] for s in made["subjects"]] == ["patient001", "patient002", "patient003"]
    assert (out / "patient003" / "Info.cfg").exists()

    code, stdout, _ = cli(
        "--lab",
        lab,
        "data",
        "import",
        str(out),
        "--name",
        "acdc",
        "--size",
        "32",
        "--val-subjects",
        "1",
        "--json",
        "--progress",
        "none",
    )
    assert code == 0
    result = json.loads(stdout)
    assert result["id"] == "acdc" and result["subjects"] == 3 and result["val"] == 1 and result["size"] == 32

    code, stdout, _ = cli("--lab", lab, "ls", "datasets", "--json")
    listed = json.loads(stdout)
    assert [e["id"] for e in listed] == ["acdc"] and listed[0]["summary"]["slices"] == result["slices"]


def test_import_progress_as_json_lines(tmp_path: Path, cli) -> None:
    out = tmp_path / "ph"
    cli(
        "data",
        "phantom",
        "--subjects",
        "2",
        "--scale",
        "0.3",
        "--out",
        str(out),
        "--layout",
        "nnunet",
        "--progress",
        "none",
    )
    code, stdout, _ = cli(
        "--lab", str(tmp_path / "lab"), "data", "import", str(out), "--size", "32", "--progress", "jsonl"
    )
    assert code == 0
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[0]["type"] == "started" and events[0]["total"] == 4 and events[0]["unit"] == "volumes"
    assert events[-1]["type"] == "finished" and events[-1]["result"] == "ph"  # name derived from the folder
    progress = [e for e in events if e["type"] == "progress"]
    assert [e["done"] for e in progress] == [1, 2, 3, 4] and all(e["total"] == 4 for e in progress)


def test_default_name_does_not_overwrite(tmp_path: Path, cli) -> None:
    out = tmp_path / "ph"
    lab = str(tmp_path / "lab")
    cli(
        "data",
        "phantom",
        "--subjects",
        "1",
        "--preset",
        "t1",
        "--scale",
        "0.3",
        "--out",
        str(out),
        "--progress",
        "none",
    )
    for _ in range(2):
        code, _, _ = cli("--lab", lab, "data", "import", str(out), "--size", "32", "--progress", "none")
        assert code == 0
    assert sorted(p.name for p in (tmp_path / "lab" / "datasets").iterdir()) == ["ph-2.h5", "ph.h5"]


@pytest.mark.parametrize("case", ["mismatch", "truncated", "existing"])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, cli, case: str) -> None:
    import nibabel as nib

    lab = tmp_path / "lab"
    root = tmp_path / "f"
    for sub, shape in (("images", (16, 16, 2)), ("labels", (16, 15, 2) if case == "mismatch" else (16, 16, 2))):
        (root / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.zeros(shape, dtype=np.uint8), np.eye(4)), str(root / sub / "a.nii.gz"))
    if case == "truncated":
        p = root / "images" / "a.nii.gz"
        p.write_bytes(p.read_bytes()[:40])
    if case == "existing":
        assert (
            cli(
                "--lab",
                str(lab),
                "data",
                "import",
                str(root),
                "--name",
                "d",
                "--size",
                "16",
                "--progress",
                "none",
            )[0]
            == 0
        )
    code, stdout, stderr = cli(
        "--lab", str(lab), "data", "import", str(root), "--name", "d", "--size", "16", "--progress", "none"
    )
    assert code == 2
    assert stderr.startswith("error:") and "Traceback" not in stderr
    expected = {
        "mismatch": "labels/a.nii.gz: label shape",
        "truncated": "images/a.nii.gz: cannot read NIfTI",
        "existing": "already exists",
    }[case]
    assert expected in " ".join(stderr.split())
    files = sorted(p.name for p in (lab / "datasets").iterdir()) if (lab / "datasets").exists() else []
    assert files == (["d.h5"] if case == "existing" else [])


def test_phantom_bad_preset_exit_2(tmp_path: Path, cli) -> None:
    code, _, stderr = cli("data", "phantom", "--preset", "ct", "--out", str(tmp_path / "x"), "--progress", "none")
    assert code == 2 and "unknown phantom preset 'ct'" in stderr
    assert not (tmp_path / "x").exists()


def test_help_teaches_with_an_example(cli) -> None:
    code, stdout, _ = cli("data", "import", "--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "--val-subjects" in text and "Example" in text and "reuse-console data import" in text
