"""Every third-party model the README names, through the whole CLI pipeline as a user runs it.

layers (fresh) -> train seg and ae (1 epoch) -> eval -> scan -> rmse -> bn, and one swap checked against a
state dict built by hand (the recipient's tensors with the donor's one tensor put in) evaluated by
the plain evaluation path (engine.evaluation.evaluate.evaluate_seg), not by the swap engine.
Tiny configs on the 64 px toy data set so the 2-core CI runs them in a few seconds each.
"""

from __future__ import annotations

import json

import pytest
import torch
from toydata import write_toy

from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches, evaluate_seg
from reuse_console.engine.models.registry import load_model
from reuse_console.store.checkpoints import read_checkpoint

pytestmark = pytest.mark.slow

SMP = {"encoder_name": "resnet18", "encoder_weights": None, "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
BASIC = {"spatial_dims": 2, "features": [4, 4, 8, 8, 16, 4]}
DYN = {"spatial_dims": 2, "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2]}
UNET3D = {"spatial_dims": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0, "norm": "batch"}
TV = {"weights": None, "weights_backbone": None}

MODELS = {  # id: (arch, config, extra train options, has running statistics)
    "smp-unet": ("segmentation_models_pytorch:Unet", SMP, [], True),
    "basicunet-batch": ("monai.networks.nets:BasicUNet", {**BASIC, "norm": "batch"}, [], True),
    "basicunet-instance": ("monai.networks.nets:BasicUNet", {**BASIC, "norm": "instance"}, [], False),
    "basicunet-group": ("monai.networks.nets:BasicUNet", {**BASIC, "norm": ["group", {"num_groups": 2}]}, [], False),
    "dynunet": ("monai.networks.nets:DynUNet", DYN, [], False),
    "dynunet-deep": ("monai.networks.nets:DynUNet", {**DYN, "deep_supervision": True}, ["--deep-supervision"], False),
    "torchvision-lraspp": (
        "torchvision.models.segmentation:lraspp_mobilenet_v3_large",
        TV,
        ["--input", "repeat"],
        True,
    ),
    "monai-unet-3d": ("monai.networks.nets:UNet", UNET3D, [], True),
}
RUN = ["--epochs", "1", "--batch", "4", "--device", "cpu", "--progress", "none"]


@pytest.mark.parametrize("model_id", list(MODELS))
def test_a_user_model_goes_through_the_whole_pipeline(lab, cli, model_id: str) -> None:
    arch, config, extra, running_stats = MODELS[model_id]
    write_toy(lab)
    L = ("--lab", str(lab.root))
    code, out, err = cli("layers", "--arch", arch, "--arch-config", json.dumps(config), "--json")
    assert code == 0, err
    assert json.loads(out), "no layers indexed"
    for task, seed in (("seg", "1"), ("ae", "2")):
        code, _, err = cli(
            *L, "train", "--data", "toy", "--arch", arch, "--arch-config", json.dumps(config),
            "--task", task, "--seed", seed, "--name", task, *RUN, *extra,
        )  # fmt: skip
        assert code == 0, err

    code, out, err = cli(*L, "eval", "seg", "--json")
    assert code == 0 and set(json.loads(out)["dice"]) == {"background", "RV", "MYO", "LV"}, err
    code, out, err = cli(*L, "eval", "ae", "--json")
    assert code == 0 and json.loads(out)["mse"] > 0, err

    code, out, err = cli(*L, "layers", "seg", "--json")
    assert code == 0, err
    layers = json.loads(out)
    numbered = [x for x in layers if x["index"] is not None]
    assert numbered, "no numbered layers"
    code, out, err = cli(*L, "scan", "seg", "ae", "--data", "toy", "--device", "cpu", "--json")
    assert code == 0, err
    scan = json.loads(out)
    assert len(scan["variants"]) == sum(len(x["kinds"]) for x in layers)
    code, out, err = cli(*L, "rmse", "seg", "ae", "--json")
    assert code == 0, err
    assert {r["layer"] for r in json.loads(out)["pairs"][0]["rows"]} >= {x["index"] for x in numbered}
    code, _, err = cli(*L, "bn", "seg", "ae")
    if running_stats:
        assert code == 0, err
    else:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    first = numbered[0]
    kind = first["kinds"][0]  # RM where the norm keeps statistics, else RW, else W
    code, out, err = cli(*L, "swap", "seg", "ae", "--data", "toy", "--layers", "1", "--kinds", kind, "--json")
    assert code == 0, err
    (variant,) = json.loads(out)["variants"]
    (key,) = variant["keys"]
    recipient, _ = read_checkpoint(lab.path("checkpoints", "seg"))
    donor, _ = read_checkpoint(lab.path("checkpoints", "ae"))
    assert not torch.equal(recipient[key], donor[key])
    model, meta = load_model(lab, "seg")
    own = model.state_dict(keep_vars=True)
    aliases = [k for k, v in own.items() if v is own[key]]  # DynUNet lists its blocks twice (skip_layers)
    model.load_state_dict({**recipient, **{k: donor[key] for k in aliases}})
    samples = checkpoint_samples(load_slices(lab, "toy"), model, meta.extra)
    batches, subjects = eval_batches(samples, "val")
    plain = evaluate_seg(model, batches, subjects, samples.classes, samples.present, torch.device("cpu"))
    assert variant["dice"] == pytest.approx(plain.by_class(), abs=1e-6)
