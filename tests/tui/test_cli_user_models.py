"""`train` and `eval` with real third-party models, as a new user tries them (tiny, CPU, 1 epoch)."""

from __future__ import annotations

import json

import pytest
from toydata import write_toy  # noqa: E402

from reuse_console.store.checkpoints import read_checkpoint, read_meta

RUN = ["--epochs", "1", "--batch", "4", "--device", "cpu", "--progress", "none"]
SMP = {"encoder_name": "resnet18", "encoder_weights": None, "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
LRASPP = "torchvision.models.segmentation:lraspp_mobilenet_v3_large"
DYN = {
    "spatial_dims": 2,
    "kernel_size": [3, 3, 3],
    "strides": [1, 2, 2],
    "upsample_kernel_size": [2, 2],
    "filters": [4, 8, 16],
}


def _train(cli, lab, arch: str, config: dict, *extra: str) -> tuple[int, str, str]:
    return cli(
        "--lab",
        str(lab.root),
        "train",
        "--data",
        "toy",
        "--arch",
        arch,
        "--arch-config",
        json.dumps(config),
        *RUN,
        *extra,
    )


def _no_run_files(lab) -> bool:
    runs = lab.root / "runs"
    return not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("channels", [{}, {"in_channels": 1, "classes": 4}])
def test_smp_unet_trains_with_or_without_channel_keys(lab, cli, channels) -> None:
    write_toy(lab)
    code, _, err = _train(cli, lab, "segmentation_models_pytorch:Unet", {**SMP, **channels})
    assert code == 0, err
    assert "run Unet-seg-toy:" in err  # named by the library's class, not "unet-seg-toy"
    meta = read_meta(lab.path("checkpoints", "Unet-seg-toy"))
    assert meta.arch_config["classes"] == 4 and meta.arch_config["in_channels"] == 1


def test_a_model_that_does_not_fit_is_refused_before_a_run_file(lab, cli) -> None:
    write_toy(lab)  # 4 classes
    code, out, err = _train(cli, lab, "segmentation_models_pytorch:Unet", {**SMP, "classes": 2})
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: segmentation_models_pytorch:Unet (Unet) gives 2 output channels, the data set needs 4: "
        "set --arch-config '{\"classes\": 4}'"
    ]
    assert _no_run_files(lab)
    code, _, err = _train(cli, lab, "segmentation_models_pytorch:Unet", {**SMP, "in_channels": 3, "classes": 4})
    assert code == 2 and "set --arch-config '{\"in_channels\": 1}' or use --input repeat" in err
    assert _no_run_files(lab)


def test_torchvision_lraspp_repeat_dict_output_train_and_eval(lab, cli) -> None:
    write_toy(lab)
    config = {"weights": None, "weights_backbone": None}
    code, _, err = _train(cli, lab, LRASPP, config)
    assert code == 2 and "takes 3 input channels" in err and "--input repeat" in err and _no_run_files(lab)
    code, _, err = _train(cli, lab, LRASPP, config, "--input", "repeat")
    assert code == 0, err
    meta = read_meta(lab.path("checkpoints", "LRASPP-seg-toy"))
    assert meta.arch_config["adapter"]["input"] == "repeat" and meta.arch_config["adapter"]["channels"] == 3
    assert meta.arch_config["num_classes"] == 4
    code, out, err = cli("--lab", str(lab.root), "eval", "LRASPP-seg-toy", "--json", "--device", "cpu")
    assert code == 0, err
    assert set(json.loads(out)["dice"]) == {"background", "RV", "MYO", "LV"}


@pytest.mark.parametrize("deep", [False, True])
def test_monai_dynunet_deep_supervision(lab, cli, deep) -> None:
    write_toy(lab)
    flags = ["--deep-supervision"] if deep else []
    code, _, err = _train(cli, lab, "monai.networks.nets:DynUNet", {**DYN, "deep_supervision": True}, *flags)
    assert code == 0, err
    meta = read_meta(lab.path("checkpoints", "DynUNet-seg-toy"))
    assert meta.arch_config["adapter"]["deep_supervision"] is deep
    code, out, err = cli("--lab", str(lab.root), "eval", "DynUNet-seg-toy", "--json", "--device", "cpu")
    assert code == 0, err


def test_builtin_unet_with_channel_keys_in_arch_config(lab, cli) -> None:
    write_toy(lab)
    code, _, err = _train(cli, lab, "unet", {"base_width": 4, "in_channels": 1, "out_channels": 4})
    assert code == 0, err
    assert "run unet-seg-toy:" in err
    code, _, err = _train(cli, lab, "unet", {"base_width": 4, "out_channels": 3})
    assert code == 2 and "set --arch-config '{\"out_channels\": 4}'" in err


FACTORY = """
from torch import nn

class Logits(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.norm = nn.BatchNorm2d(num_classes)

    def forward(self, x):
        return {"logits": self.norm(self.conv(x)), "features": x}

def make_logits(in_channels=3, num_classes=2):
    return Logits(in_channels, num_classes)
"""


def test_factory_with_dict_output_needs_output_key(lab, cli, tmp_path, monkeypatch) -> None:
    import sys
    import uuid

    module = f"cli_factory_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    write_toy(lab)
    try:
        code, _, err = _train(cli, lab, f"{module}:make_logits", {})
        assert code == 2 and _no_run_files(lab)
        assert (
            err.strip()
            == "error: the model returns a dict with keys 'logits', 'features': choose one with --output KEY"
        )
        code, _, err = _train(cli, lab, f"{module}:make_logits", {}, "--output", "logits")
        assert code == 0, err
        assert "run Logits-seg-toy:" in err
        meta = read_meta(lab.path("checkpoints", "Logits-seg-toy"))
        assert (meta.arch_config["in_channels"], meta.arch_config["num_classes"]) == (1, 4)
        assert meta.arch_config["adapter"]["output"] == "logits"
        # a function named in a lab file is only called when the user lists it (os:system is a function too)
        code, _, err = cli("--lab", str(lab.root), "eval", "Logits-seg-toy", "--json", "--device", "cpu")
        assert code == 2 and f"REUSE_TRUST_ARCH={module}:make_logits" in err
        monkeypatch.setenv("REUSE_TRUST_ARCH", module)
        code, _, err = cli("--lab", str(lab.root), "eval", "Logits-seg-toy", "--json", "--device", "cpu")
        assert code == 0, err
    finally:
        sys.modules.pop(module, None)


def test_adapted_checkpoints_reopen_in_scan_swap_and_rmse(lab, cli) -> None:
    """The repeat adapter is rebuilt from the checkpoint by every command that runs the model."""
    write_toy(lab)
    config = {"weights": None, "weights_backbone": None}
    for seed in ("1", "2"):
        code, _, err = _train(cli, lab, LRASPP, config, "--input", "repeat", "--seed", seed, "--name", f"l{seed}")
        assert code == 0, err
    L = ("--lab", str(lab.root))
    code, out, err = cli(*L, "scan", "l1", "l2", "--data", "toy", "--layers", "1", "--kinds", "RM", "--device", "cpu")
    assert code == 0, err
    code, out, err = cli(*L, "swap", "l1", "l2", "--data", "toy", "--layers", "1", "--kinds", "RM", "--device", "cpu")
    assert code == 0, err
    code, out, err = cli(*L, "rmse", "l1", "l2", "--json")
    assert code == 0, err
    rows = json.loads(out)["pairs"][0]["rows"]
    got = next(r["rmse"] for r in rows if r["layer"] == 1 and r["kind"] == "W")
    a, _ = read_checkpoint(lab.path("checkpoints", "l1"))  # by the library's tensor name: layer 1 is backbone.0.0
    b, _ = read_checkpoint(lab.path("checkpoints", "l2"))
    key = "backbone.0.0.weight"
    assert got == pytest.approx(float((a[key].double() - b[key].double()).pow(2).mean().sqrt()), rel=1e-5)


def test_a_1d_model_is_refused_before_a_run_file_with_what_to_change(lab, cli) -> None:
    write_toy(lab)
    config = {"spatial_dims": 1, "channels": [4, 8], "strides": [2]}
    code, _, err = _train(cli, lab, "monai.networks.nets:UNet", config)
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "starts with a 1D convolution (Conv1d)" in line and '"spatial_dims"' in line
    assert _no_run_files(lab)


def test_layers_of_a_fresh_model_takes_its_first_convs_input_channels(cli) -> None:
    """torchvision's segmentation models take 3 channels whatever is asked: `layers --arch` indexes
    them without --in-channels (the user would not know the number)."""
    config = {"weights": None, "weights_backbone": None}
    code, out, err = cli("layers", "--arch", LRASPP, "--arch-config", json.dumps(config), "--json")
    assert code == 0, err
    index = json.loads(out)
    assert index[0]["shapes"]["W"][1] == 3  # the first conv's input channels
