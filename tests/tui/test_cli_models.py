"""`reuse-console layers` and `ckpt import|export` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reuse_console.engine.models.registry import build_model, default_config, save_model
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint


def _unet_file(tmp_path: Path, base_width: int = 4) -> Path:
    torch.manual_seed(0)
    model = build_model("unet", default_config("unet", 1, 4, base_width=base_width))
    path = tmp_path / f"unet{base_width}.pt"
    torch.save(model.state_dict(), path)
    return path


def test_layers_json_for_fresh_architectures(cli) -> None:
    code, out, _ = cli("layers", "--arch", "unet", "--arch-config", '{"base_width": 4}', "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["index"] for r in rows] == list(range(1, 19)) + [None] * 5
    assert [r["name"] for r in rows[18:]] == ["up1", "up2", "up3", "up4", "head"]
    assert rows[0]["shapes"]["W"] == [4, 1, 3, 3]
    code, out, _ = cli("layers", "--arch", "pspnet", "--arch-config", '{"width": 0.125, "conv_bias": false}', "--json")
    rows = json.loads(out)
    assert code == 0 and sum(r["index"] is not None for r in rows) == 25
    assert rows[-1]["name"] == "head" and rows[-1]["kinds"] == ["W"]


def test_layers_of_a_checkpoint_table(cli, lab) -> None:
    config = default_config("unet", 2, 3, base_width=4)
    save_model(
        lab, "seg-small", build_model("unet", config), CheckpointMeta(arch="unet", arch_config=config, task="seg")
    )
    code, out, _ = cli("layers", "seg-small", "--lab", str(lab.root))
    assert code == 0
    assert "18 numbered layers" in out and "up4" in out and "4x2x3x3" in out  # 2 input channels from the config
    code, out, _ = cli("layers", "seg-small", "--lab", str(lab.root), "--json")
    assert json.loads(out)[-1]["shapes"]["W"] == [3, 4, 1, 1]


def test_layers_says_which_norms_it_found_and_which_it_could_not_pair(cli) -> None:
    config = '{"spatial_dims": 2, "features": [4, 4, 8, 8, 16, 4], "norm": ["instance", {"affine": true}]}'
    code, out, _ = cli("layers", "--arch", "monai.networks.nets:BasicUNet", "--arch-config", config, "--size", "32")
    assert code == 0 and "18 numbered layers" in out
    assert "norms: InstanceNorm2d 18 (RW RB)" in " ".join(out.split())
    code, out, _ = cli("layers", "--arch", "norm_nets:MixedNorms", "--size", "8")  # tests/support/norm_nets.py
    text = " ".join(out.split())
    assert code == 0 and "6 numbered layers" in text
    assert "InstanceNorm2d 1 (RM RV RW RB)" in text and "GroupNorm 1 (RW RB)" in text and "LayerNorm 1 (RW)" in text
    assert "InstanceNorm2d 1 (no norm tensors" in text
    assert "no conv right before them (listed by name, not numbered): inorm (BatchNorm2d)" in text
    no_norm = '{"spatial_dims": 3, "features": [4, 4, 4, 4, 8, 4], "norm": null}'  # a 3D model: 16^3 input
    code, out, _ = cli("layers", "--arch", "monai.networks.nets:BasicUNet", "--arch-config", no_norm, "--size", "16")
    text = " ".join(out.split())
    assert code == 0 and "0 numbered layers" in text and "none after any conv (layers are W/B only)" in text
    assert "4x1x3x3x3" in text  # the first Conv3d's weight


def test_layers_names_each_layers_norm_type(cli) -> None:
    """--json: every layer's norm class (null for a conv with none); the table: a norm column
    when the model mixes norm types, within 80 columns."""
    code, out, _ = cli("layers", "--arch", "unet", "--arch-config", '{"base_width": 4}', "--json")
    rows = json.loads(out)
    assert code == 0 and [r["norm"] for r in rows] == ["BatchNorm2d"] * 18 + [None] * 5
    for norm, name in (("instance", "InstanceNorm2d"), ("group", "GroupNorm")):
        config = {"spatial_dims": 2, "features": [4, 4, 8, 8, 16, 4], "norm": [norm, {"num_groups": 2}]}
        if norm == "instance":
            config["norm"] = "instance"  # MONAI's default: not affine, no running statistics
        argv = ("layers", "--arch", "monai.networks.nets:BasicUNet", "--arch-config", json.dumps(config))
        code, out, _ = cli(*argv, "--size", "32", "--json")
        norms = {r["name"]: r["norm"] for r in json.loads(out)}
        assert code == 0 and norms["1"] == norms["18"] == name and norms["final_conv"] is None
    code, out, _ = cli("layers", "--arch", "norm_nets:MixedNorms", "--size", "8", "--json")
    norms = [r["norm"] for r in json.loads(out)]
    assert norms == [
        "BatchNorm2d",
        "InstanceNorm2d",
        "GroupNorm",
        "LayerNorm",
        "InstanceNorm2d",
        "LayerNorm",
        "BatchNorm2d",  # inorm: the norm on the input, listed by name
    ]
    code, out, _ = cli("layers", "--arch", "norm_nets:MixedNorms", "--size", "8")
    lines = out.splitlines()
    assert code == 0 and max(map(len, lines)) <= 80
    assert "norm" in lines[2].split("┃")[3]  # the header: layer, modules, norm, kinds, ...
    row = {cells[1].strip(): [c.strip() for c in cells[2:]] for cells in (line.split("│") for line in lines[4:11])}
    assert row["3"][:2] == ["c3 + n3", "GroupNorm"] and row["5"][1] == "InstanceNorm2d"
    code, out, _ = cli("layers", "--arch", "unet", "--arch-config", '{"base_width": 4}')
    assert code == 0 and "norm " not in out.splitlines()[2] and max(map(len, out.splitlines())) <= 80
    assert "norms: BatchNorm2d 18" in out  # one type: the norms line names it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["layers"], "give a checkpoint id or --arch"),
        (["layers", "x", "--arch", "unet"], "give a checkpoint id or --arch"),
        (["layers", "--arch", "vgg"], "unknown architecture 'vgg'"),
        (["layers", "--arch", "unet", "--arch-config", "{oops"], "not valid JSON"),
        (["layers", "--arch", "unet", "--arch-config", '{"depth": 3}'], "no config key 'depth'"),
        (["layers", "--arch", "no_such_pkg.mod:Net"], "cannot import module"),
        (["layers", "missing-ckpt"], "no checkpoint 'missing-ckpt'"),
    ],
)
def test_layers_user_errors_are_one_line_exit_2(cli, lab, argv: list[str], message: str) -> None:
    code, out, err = cli(*argv, "--lab", str(lab.root))
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_ckpt_import_export_round_trip(cli, lab, tmp_path: Path) -> None:
    source = _unet_file(tmp_path)
    root = str(lab.root)
    code, _, err = cli(
        "ckpt",
        "import",
        str(source),
        "--arch",
        "unet",
        "--task",
        "seg",
        "--name",
        "ext",
        "--arch-config",
        '{"base_width": 4}',
        "--data",
        "acdc",
        "--lab",
        root,
    )
    assert code == 0 and "imported" in err
    state, meta = read_checkpoint(lab.path("checkpoints", "ext"))
    assert meta.arch == "unet" and meta.task == "seg" and meta.data == "acdc"
    assert meta.classes == ["background", "RV", "MYO", "LV"]

    out_file = tmp_path / "ext.safetensors"
    code, out, _ = cli("ckpt", "export", "ext", "--format", "safetensors", "--out", str(out_file), "--lab", root)
    assert code == 0 and out.strip() == str(out_file)
    exported = load_file(str(out_file))
    original = torch.load(source, weights_only=True)
    assert exported.keys() == original.keys()
    assert all(torch.equal(exported[k], original[k]) for k in original)

    code, _, err = cli("ckpt", "export", "ext", "--out", str(out_file), "--lab", root)
    assert code == 2 and "--force" in err


def test_ckpt_import_refuses_code_and_names_mismatches(cli, lab, tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"enc1.conv1.weight": Payload()}, evil)
    base = ["--arch", "unet", "--task", "seg", "--lab", str(lab.root)]
    code, _, err = cli("ckpt", "import", str(evil), "--name", "evil", *base)
    assert code == 2 and "refused evil.pt" in err and not marker.exists()

    code, _, err = cli(
        "ckpt", "import", str(_unet_file(tmp_path, 8)), "--name", "w", *base, "--arch-config", '{"base_width": 4}'
    )
    assert code == 2 and "enc1.conv1.weight has shape (8, 1, 3, 3)" in err.replace("\n", "")

    code, _, err = cli(
        "ckpt",
        "import",
        str(_unet_file(tmp_path)),
        "--name",
        "c",
        *base,
        "--arch-config",
        '{"base_width": 4}',
        "--classes",
        "a,b",
    )
    assert code == 2 and "names 2 classes" in err
    assert not lab.files("checkpoints")
