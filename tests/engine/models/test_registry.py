"""The registry: arch + config rebuild a model exactly; user models by "pkg.mod:Class"."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.pspnet import PSPNet
from reuse_console.engine.models.registry import (
    build_model,
    default_config,
    load_model,
    parse_arch_config,
    save_model,
)
from reuse_console.engine.models.unet import UNet
from reuse_console.store.checkpoints import CheckpointMeta, read_meta
from reuse_console.store.errors import NotFound, UserError

USER_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, in_channels=1, out_channels=2, hidden=3):
            super().__init__()
            self.stem = nn.Conv2d(in_channels, hidden, 3, padding=1)
            self.norm = nn.BatchNorm2d(hidden)
            self.classifier = nn.Conv2d(hidden, out_channels, 1)

        def forward(self, x):
            return self.classifier(torch.relu(self.norm(self.stem(x))))

    NOT_A_MODEL = 3
    """
)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user model file in its own folder on sys.path, under a fresh module name."""
    name = f"user_models_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{name}.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def _randomise_bn(model: nn.Module) -> None:
    """Give BN running stats non-default values, so a round trip that dropped them would show."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def test_default_config_and_build() -> None:
    config = default_config("unet", 1, 4, base_width=8)
    assert config == {"in_channels": 1, "out_channels": 4, "base_width": 8, "conv_bias": True}
    model = build_model("unet", config)
    assert isinstance(model, UNet) and model.enc1.conv1.out_channels == 8 and model.head.out_channels == 4
    psp = build_model("pspnet", default_config("pspnet", 2, 3, width=0.125, conv_bias=False))
    assert isinstance(psp, PSPNet) and psp.backbone.conv1.in_channels == 2 and psp.head.bias is None


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
def test_save_then_load_gives_identical_state_and_output(lab, arch: str) -> None:
    overrides = {"base_width": 4} if arch == "unet" else {"width": 0.125}
    config = default_config(arch, 1, 4, **overrides)
    model = build_model(arch, config)
    _randomise_bn(model)
    model.eval()
    meta = CheckpointMeta(arch=arch, arch_config=config, task="seg", data="acdc", classes=["a", "b", "c", "d"], epoch=3)
    path = save_model(lab, f"m-{arch}", model, meta)
    assert path == lab.path("checkpoints", f"m-{arch}") and read_meta(path).epoch == 3

    loaded, loaded_meta = load_model(lab, f"m-{arch}")
    assert loaded_meta.arch_config == config and loaded_meta.classes == ["a", "b", "c", "d"]
    assert not loaded.training
    original, again = model.state_dict(), loaded.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # also by kind/id and by file path
    assert load_model(lab, f"checkpoints/m-{arch}")[1].arch == arch
    assert load_model(lab, str(path))[1].arch == arch


def test_user_model_by_module_path(lab, user_module: str) -> None:
    arch = f"{user_module}:TinyNet"
    config = default_config(arch, 1, 2, hidden=5)
    model = build_model(arch, config)
    assert type(model).__name__ == "TinyNet" and model.stem.out_channels == 5
    index = LayerIndex.from_model(model, in_channels=1, size=8)
    assert [(layer.name, layer.conv, layer.bn) for layer in index.layers] == [
        ("1", "stem", "norm"),
        ("classifier", "classifier", None),
    ]
    save_model(lab, "tiny", model, CheckpointMeta(arch=arch, arch_config=config, task="seg"))
    loaded, _ = load_model(lab, "tiny")
    assert torch.equal(loaded.stem.weight, model.stem.weight)


def test_registry_errors(user_module: str) -> None:
    with pytest.raises(UserError, match="unknown architecture 'resnet'"):
        build_model("resnet", {})
    with pytest.raises(UserError, match="cannot import module"):
        build_model("no_such_module_here:Net", {})
    with pytest.raises(UserError, match="has no 'Missing'"):
        build_model(f"{user_module}:Missing", {})
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model(f"{user_module}:NOT_A_MODEL", {})
    with pytest.raises(UserError, match="cannot build"):
        build_model(f"{user_module}:TinyNet", {"depth": 3})
    with pytest.raises(UserError, match="no config key 'depth'"):
        default_config("unet", 1, 4, depth=3)


def test_parse_arch_config(tmp_path: Path) -> None:
    assert parse_arch_config(None) == {} and parse_arch_config("") == {}
    assert parse_arch_config('{"base_width": 16}') == {"base_width": 16}
    config_file = tmp_path / "arch.json"
    config_file.write_text('{"width": 0.5}')
    assert parse_arch_config(f"@{config_file}") == {"width": 0.5}
    with pytest.raises(UserError, match="not valid JSON"):
        parse_arch_config("{base_width: 16}")
    with pytest.raises(UserError, match="JSON object"):
        parse_arch_config("[1, 2]")
    with pytest.raises(UserError, match="not found"):
        parse_arch_config(f"@{tmp_path / 'missing.json'}")


def test_load_model_unknown_checkpoint(lab) -> None:
    with pytest.raises(NotFound):
        load_model(lab, "nothing-here")


def test_load_model_rebuilds_without_backbone_file(lab, tmp_path: Path) -> None:
    """A PSPNet trained from local backbone weights reopens after that file is gone."""
    import torchvision

    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    config = default_config("pspnet", 1, 4, backbone_weights=str(weights))
    model = build_model("pspnet", config)
    save_model(lab, "pretrained", model, CheckpointMeta(arch="pspnet", arch_config=config, task="seg"))
    weights.unlink()
    loaded, _ = load_model(lab, "pretrained")
    assert torch.equal(loaded.backbone.conv1.weight, model.backbone.conv1.weight)
