"""The layer index: the paper's numbering (18 UNet, 25 PSPNet) in forward order, kinds, selection."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from reuse_console.engine.models.layers import KINDS, LayerIndex
from reuse_console.engine.models.pspnet import PSPNet
from reuse_console.engine.models.unet import UNet
from reuse_console.store.errors import UserError

UNET_CONVS = [
    f"{block}.conv{i}"
    for block in ("enc1", "enc2", "enc3", "enc4", "enc5", "dec1", "dec2", "dec3", "dec4")
    for i in (1, 2)
]


@pytest.fixture(scope="module")
def unet_index() -> LayerIndex:
    return LayerIndex.from_model(UNet(in_channels=1, out_channels=4, base_width=4), in_channels=1)


@pytest.fixture(scope="module")
def psp_index() -> LayerIndex:
    return LayerIndex.from_model(PSPNet(in_channels=1, out_channels=4, width=0.125, conv_bias=False), in_channels=1)


def test_unet_18_numbered_layers_in_forward_order(unet_index: LayerIndex) -> None:
    numbered = unet_index.numbered
    assert [layer.index for layer in numbered] == list(range(1, 19))
    assert [layer.conv for layer in numbered] == UNET_CONVS
    assert [layer.bn for layer in numbered] == [c.replace(".conv", ".bn") for c in UNET_CONVS]
    loose = [layer for layer in unet_index.layers if layer.index is None]
    assert [layer.name for layer in loose] == ["up1", "up2", "up3", "up4", "head"]
    assert all(layer.bn is None and layer.kinds == ("W", "B") for layer in loose)


def test_pspnet_25_numbered_layers_downsample_where_it_runs(psp_index: LayerIndex) -> None:
    numbered = psp_index.numbered
    assert len(numbered) == 25
    assert numbered[0].conv == "backbone.conv1" and numbered[0].bn == "backbone.bn1"
    # BasicBlock runs conv1, conv2, then the downsample branch: 1 stem + 4 (layer1) + 5 per stage
    downsample = [layer.index for layer in numbered if "downsample" in (layer.bn or "")]
    assert downsample == [8, 13, 18]
    assert numbered[7].conv == "backbone.layer2.0.downsample.0"
    assert [layer.bn for layer in numbered[20:]] == [f"ppm.{i}.bn" for i in range(4)] + ["bottleneck.bn"]
    assert [layer.name for layer in psp_index.layers if layer.index is None] == ["head"]


def test_numbering_follows_execution_not_definition() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.late_conv, self.late_bn = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
            self.early_conv, self.early_bn = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)
            self.out = nn.Conv2d(3, 2, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.early_bn(self.early_conv(x)))
            return self.out(self.late_bn(self.late_conv(x)))

    index = LayerIndex.from_model(Backwards(), in_channels=1, size=8)
    assert [(layer.name, layer.conv, layer.bn) for layer in index.layers] == [
        ("1", "early_conv", "early_bn"),
        ("2", "late_conv", "late_bn"),
        ("out", "out", None),
    ]
    assert index.get("out").kinds == ("W",)


def test_kinds_have_bias_only_with_conv_bias() -> None:
    with_bias = LayerIndex.from_model(UNet(base_width=4, conv_bias=True), in_channels=1)
    without = LayerIndex.from_model(UNet(base_width=4, conv_bias=False), in_channels=1)
    assert all(layer.kinds == KINDS for layer in with_bias.numbered)
    assert all(layer.kinds == ("RM", "RV", "RW", "RB", "W") for layer in without.numbered)
    assert without.get("head").kinds == ("W",)


def test_shapes_and_numel_match_the_state_dict(psp_index: LayerIndex, unet_index: LayerIndex) -> None:
    for model, index in ((UNet(base_width=4), unet_index), (PSPNet(width=0.125, conv_bias=False), psp_index)):
        state = model.state_dict()
        for layer in index.layers:
            for kind in layer.kinds:
                assert layer.shapes[kind] == tuple(state[layer.key(kind)].shape)
                assert layer.numel[kind] == state[layer.key(kind)].numel()
    first = unet_index.get(1)
    assert first.shapes["W"] == (4, 1, 3, 3) and first.numel["W"] == 36 and first.shapes["RM"] == (4,)


def test_keys_per_kind(unet_index: LayerIndex) -> None:
    layer = unet_index.get(1)
    assert [layer.key(k) for k in KINDS] == [
        "enc1.bn1.running_mean",
        "enc1.bn1.running_var",
        "enc1.bn1.weight",
        "enc1.bn1.bias",
        "enc1.conv1.weight",
        "enc1.conv1.bias",
    ]
    with pytest.raises(UserError, match="no RM"):
        unet_index.get("head").key("RM")


def test_get_by_number_name_or_module_path(unet_index: LayerIndex) -> None:
    third = unet_index.get(3)
    assert unet_index.get("3") is third
    assert unet_index.get("enc2.conv1") is third and unet_index.get("enc2.bn1") is third
    assert unet_index.get("head").conv == "head"
    for bad in ("0", "19", "nope"):
        with pytest.raises(UserError):
            unet_index.get(bad)


def test_select(unet_index: LayerIndex) -> None:
    chosen = unet_index.select("1-5,9,head")
    assert [layer.name for layer in chosen] == ["1", "2", "3", "4", "5", "9", "head"]
    assert [layer.name for layer in unet_index.select(" head , 2 ")] == ["2", "head"]
    assert len(unet_index.select("all")) == 23
    assert len(unet_index.select("numbered")) == 18
    assert [layer.name for layer in unet_index.select("dec4.conv2,1-1")] == ["1", "18"]


@pytest.mark.parametrize("spec", ["0", "1-99", "foo", "5-1", "", "1,,2", "19"])
def test_select_rejects_bad_specs(unet_index: LayerIndex, spec: str) -> None:
    with pytest.raises(UserError):
        unet_index.select(spec)


def test_parse_kinds() -> None:
    assert LayerIndex.parse_kinds("all") == KINDS
    assert LayerIndex.parse_kinds("rv, RM") == ("RM", "RV")
    assert LayerIndex.parse_kinds("bn") == ("RM", "RV", "RW", "RB")
    assert LayerIndex.parse_kinds("conv,RB") == ("RB", "W", "B")
    for bad in ("", "XX", "RM,"):
        with pytest.raises(UserError):
            LayerIndex.parse_kinds(bad)


def test_to_json(unet_index: LayerIndex) -> None:
    rows = json.loads(json.dumps(unet_index.to_json()))
    assert len(rows) == 23
    assert all(set(row) == {"index", "name", "modules", "kinds", "shapes", "numel", "norm"} for row in rows)
    assert rows[0]["index"] == 1 and rows[0]["modules"] == ["enc1.conv1", "enc1.bn1"]
    assert rows[0]["norm"] == "BatchNorm2d" and rows[-1]["norm"] is None  # the head has no norm
    assert rows[0]["shapes"]["W"] == [4, 1, 3, 3]
    head = rows[-1]
    assert head["index"] is None and head["name"] == "head" and head["modules"] == ["head"]


def test_indexing_leaves_the_model_as_it_was() -> None:
    model = UNet(base_width=4).train()
    model.enc3.eval()  # e.g. a frozen block during fine-tuning
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    LayerIndex.from_model(model, in_channels=1)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model.enc1.conv1._forward_hooks


def test_a_model_that_cannot_run_is_a_user_error() -> None:
    with pytest.raises(UserError, match="forward pass"):
        LayerIndex.from_model(UNet(in_channels=3, base_width=4), in_channels=1)
