"""User models from MONAI, segmentation_models_pytorch and torchvision, built and adapted by the registry.

Real third-party models, tiny and on CPU, no weights downloaded. The adapter must leave the model's
tensor names and layers as the library has them (checkpoints, swaps, RMSE and plans name tensors
by those keys) and must be seen through by fx (the scan's fast path)."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from reuse_console.engine.models.adapters import IOAdapter, pick_output
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config, model_in_channels
from reuse_console.engine.training.losses import deep_supervision_loss, head_weights, seg_loss
from reuse_console.store.errors import UserError

SMP = "segmentation_models_pytorch:Unet"
SMP_TINY = {"encoder_name": "resnet18", "encoder_weights": None, "encoder_depth": 3, "decoder_channels": [16, 8, 4]}
LRASPP = "torchvision.models.segmentation:lraspp_mobilenet_v3_large"
DYNUNET = "monai.networks.nets:DynUNet"
DYN_TINY = {
    "spatial_dims": 2,
    "kernel_size": [3, 3, 3],
    "strides": [1, 2, 2],
    "upsample_kernel_size": [2, 2],
    "filters": [4, 8, 16],
}

FACTORIES = textwrap.dedent(
    """
    from torch import nn

    class Logits(nn.Module):
        def __init__(self, in_channels, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)
            self.norm = nn.BatchNorm2d(num_classes)

        def forward(self, x):
            return {"logits": self.norm(self.conv(x)), "aux": x}

    def tiny_factory(in_channels=1, num_classes=2):
        return Logits(in_channels, num_classes)

    def not_a_model():
        return 3
    """
)


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"user_factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_channel_counts_go_under_the_names_each_library_takes() -> None:
    assert default_config(SMP, 1, 4, **SMP_TINY)["classes"] == 4
    assert default_config(LRASPP, 1, 4)["num_classes"] == 4 and "in_channels" not in default_config(LRASPP, 1, 4)
    assert default_config(DYNUNET, 1, 4, **DYN_TINY)["out_channels"] == 4
    # given in --arch-config: the user's value wins, no "multiple values for argument" clash
    assert default_config(SMP, 1, 4, in_channels=1, classes=2, **SMP_TINY)["classes"] == 2
    unet = default_config("unet", 1, 4, in_channels=2, out_channels=3, base_width=4)
    assert (unet["in_channels"], unet["out_channels"]) == (2, 3)


def test_adapted_smp_unet_keeps_the_library_tensor_names_layers_and_traces() -> None:
    import segmentation_models_pytorch as smp

    config = default_config(SMP, 1, 4, **SMP_TINY)
    torch.manual_seed(0)
    model = build_model(SMP, config).eval()
    plain = smp.Unet(**{k: v for k, v in config.items() if k != "adapter"}).eval()  # not adapted
    assert type(model).__name__ == "Unet" and isinstance(model, smp.Unet)
    assert list(model.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(model(x), plain(x))
    ours = LayerIndex.from_model(model, model_in_channels(config), 32)
    theirs = LayerIndex.from_model(plain, 1, 32)
    assert [(la.conv, la.norm) for la in ours.layers] == [(la.conv, la.norm) for la in theirs.layers]
    traced = fx.symbolic_trace(model)
    called = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    assert "encoder.conv1" in called and "segmentation_head.0" in called
    assert torch.allclose(traced(x), plain(x))


def test_torchvision_factory_dict_output_and_repeated_channel() -> None:
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    config = default_config(LRASPP, 1, 3, weights=None, weights_backbone=None)
    config["adapter"] = IOAdapter(input="repeat", channels=3).to_config()
    model = build_model(LRASPP, config).eval()
    plain = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    plain.load_state_dict(model.state_dict())
    assert model_in_channels(config) == 1
    x = torch.randn(1, 1, 64, 64)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 64, 64)
    assert torch.allclose(out, plain(x.repeat(1, 3, 1, 1))["out"])


def test_factory_in_a_user_module_and_dict_keys(factories: str) -> None:
    arch = f"{factories}:tiny_factory"
    config = default_config(arch, 1, 4)
    assert config == {"in_channels": 1, "num_classes": 4}
    model = build_model(arch, config)
    with pytest.raises(UserError, match="keys 'logits', 'aux': choose one with --output KEY"):
        model(torch.zeros(1, 1, 8, 8))
    model = build_model(arch, {**config, "adapter": {"output": "logits"}})
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4, 8, 8)
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model(f"{factories}:not_a_model", {})


def test_factory_from_a_lab_file_follows_the_trust_rules(tmp_path: Path, monkeypatch) -> None:
    name = f"user_factories_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="REUSE_TRUST_ARCH"):
        build_model(f"{name}:tiny_factory", {"num_classes": 2}, trusted=False)
    assert name not in sys.modules  # refused before importing it
    monkeypatch.setenv("REUSE_TRUST_ARCH", name)
    assert isinstance(build_model(f"{name}:tiny_factory", {"num_classes": 2}, trusted=False), nn.Module)
    sys.modules.pop(name, None)


@pytest.mark.parametrize("deep", [False, True])
def test_monai_dynunet_stacked_heads(deep: bool) -> None:
    config = default_config(DYNUNET, 1, 4, deep_supervision=True, deep_supr_num=1, **DYN_TINY)
    config["adapter"] = IOAdapter(deep_supervision=deep).to_config()
    torch.manual_seed(0)
    model = build_model(DYNUNET, config)
    x = torch.randn(2, 1, 32, 32)
    model.train()
    from monai.networks.nets import DynUNet

    stacked = DynUNet.forward(model, x)  # the library's own forward: heads stacked, (B, heads, C, H, W)
    assert stacked.ndim == 5 and stacked.shape[1] == 2
    out = model(x)
    if deep:
        assert isinstance(out, list) and len(out) == 2
        assert all(torch.allclose(h, stacked[:, i]) for i, h in enumerate(out))
    else:
        assert isinstance(out, torch.Tensor) and torch.allclose(out, stacked[:, 0])
    model.eval()
    assert model(x).shape == (2, 4, 32, 32)  # evaluation and scans: the full-resolution head


def test_pick_output_tuple_heads() -> None:
    main, low = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 4, 4)
    label = torch.zeros(1, 3)
    assert pick_output((main, low), IOAdapter(), training=False) is main
    assert pick_output((main, low), IOAdapter(), training=True) is main
    assert pick_output((main, low, label), IOAdapter(deep_supervision=True), training=True) == [main, low]


def test_deep_supervision_loss_by_hand() -> None:
    assert head_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (2, 8, 8), generator=gen)
    full, half = torch.randn(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 4, 4, generator=gen)
    got = deep_supervision_loss([full, half], y, lambda h, t: seg_loss(h, t, [1, 2]), labels=True)
    want = 2 / 3 * seg_loss(full, y, [1, 2]) + 1 / 3 * seg_loss(half, y[:, ::2, ::2], [1, 2])
    assert got.item() == pytest.approx(want.item())
    img = torch.randn(2, 1, 8, 8, generator=gen)
    got = deep_supervision_loss([full[:, :1], half[:, :1]], img, F.mse_loss, labels=False)
    pooled = img.reshape(2, 1, 4, 2, 4, 2).mean((3, 5))
    assert got.item() == pytest.approx(
        (2 / 3 * F.mse_loss(full[:, :1], img) + 1 / 3 * F.mse_loss(half[:, :1], pooled)).item()
    )


def _toy_spec(**kw):
    from reuse_console.engine.training.train import TrainSpec

    base = {"data": "toy", "epochs": 1, "batch": 4, "seed": 3, "augment": False}
    return TrainSpec(**{**base, **kw})


def test_transfer_without_arch_takes_the_donors_arch_and_config(lab) -> None:
    from toydata import write_toy

    from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe
    from reuse_console.engine.training.train import train
    from reuse_console.store.checkpoints import read_checkpoint

    write_toy(lab)
    train(lab, _toy_spec(name="donor", arch=SMP, arch_config=SMP_TINY), device="cpu")
    donor, donor_meta = read_checkpoint(lab.path("checkpoints", "donor"))
    model = build_model(SMP, donor_meta.arch_config)
    index = LayerIndex.from_model(model, 1, 64)
    plan = ReusePlan(name="p", arch=SMP, tensors=universe(index)).with_reusable({("1", "W"), ("1", "RM")})
    save_plan(lab, plan)
    result = train(lab, _toy_spec(arch="", init="donor", plan="p", mode="freeze"), device="cpu")
    assert result.name == "Unet-seg-toy"
    after, meta = read_checkpoint(result.last_path)
    assert meta.arch == SMP and meta.arch_config["decoder_channels"] == [16, 8, 4]
    assert list(after) == list(donor)
    for key in plan.keys():
        assert torch.equal(after[key], donor[key]), key  # frozen donor tensors, by the library's names


def test_deep_supervision_trains_on_every_head(lab) -> None:
    """Same seed and data: the main-head run's epoch loss is the full-resolution head's loss; the
    deep-supervision run's is the weighted sum over both heads, so the two differ from the first step."""
    from toydata import write_toy

    from reuse_console.engine.training.train import train
    from reuse_console.store.runs import read_run

    write_toy(lab)
    config = {**DYN_TINY, "deep_supervision": True}
    losses = {}
    for deep in (False, True):
        result = train(
            lab, _toy_spec(name=f"d{deep}", arch=DYNUNET, arch_config=config, deep_supervision=deep), device="cpu"
        )
        losses[deep] = read_run(result.run_path).steps["loss"][0]
    assert losses[False] != pytest.approx(losses[True], rel=1e-4)


def test_ckpt_import_of_an_smp_state_dict_infers_its_classes(lab, tmp_path: Path) -> None:
    import segmentation_models_pytorch as smp

    from reuse_console.engine.models.ckpt_io import import_checkpoint
    from reuse_console.engine.models.registry import load_model

    plain = smp.Unet(in_channels=1, classes=3, **SMP_TINY).eval()
    torch.save(plain.state_dict(), tmp_path / "unet.pt")
    _, meta = import_checkpoint(lab, tmp_path / "unet.pt", arch=SMP, task="seg", name="imp", arch_config=SMP_TINY)
    assert (meta.arch_config["in_channels"], meta.arch_config["classes"]) == (1, 3) and len(meta.classes) == 3
    model, _ = load_model(lab, "imp")
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(model(x), plain(x))
