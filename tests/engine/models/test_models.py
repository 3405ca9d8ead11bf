"""UNet and PSPNet: the layer counts the paper's figures show, shapes, bias switch, fx tracing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reuse_console.engine.models.pspnet import PSPNet
from reuse_console.engine.models.unet import UNet
from reuse_console.store.errors import UserError


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_unet_has_18_conv_bn_pairs_4_upconvs_and_a_head() -> None:
    model = UNet(in_channels=1, out_channels=4, base_width=4)
    assert _count(model, nn.BatchNorm2d) == 18
    assert _count(model, nn.ConvTranspose2d) == 4
    assert _count(model, nn.Conv2d) == 19  # 18 3x3 + the 1x1 head
    assert model.head.kernel_size == (1, 1)


def test_unet_parameter_count_matches_hand_formula() -> None:
    """Counts from the architecture's description alone: double convs, up-convs, skips, head."""
    w, cin, cout = 4, 1, 4

    def double(i: int, o: int) -> int:  # two 3x3 convs with bias, two BNs (weight + bias)
        return (9 * i * o + o + 2 * o) + (9 * o * o + o + 2 * o)

    widths = [w, 2 * w, 4 * w, 8 * w, 16 * w]
    expected = double(cin, widths[0]) + sum(double(widths[i], widths[i + 1]) for i in range(4))
    for deep, shallow in zip(widths[:0:-1], widths[-2::-1]):
        expected += 4 * deep * shallow + shallow  # 2x2 transposed conv
        expected += double(2 * shallow, shallow)  # concat of up-conv output and skip
    expected += widths[0] * cout + cout
    model = UNet(in_channels=cin, out_channels=cout, base_width=w)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("size", [64, 96, 128])
def test_unet_output_has_input_size(size: int) -> None:
    model = UNet(in_channels=2, out_channels=3, base_width=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, size, size)).shape == (1, 3, size, size)


def test_unet_conv_bias_switch() -> None:
    convs = [m for m in UNet(base_width=4, conv_bias=False).modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert len(convs) == 23 and all(c.bias is None for c in convs)
    convs = [m for m in UNet(base_width=4, conv_bias=True).modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert all(c.bias is not None for c in convs)


def test_pspnet_has_25_bn_layers() -> None:
    model = PSPNet(in_channels=1, out_channels=4, width=0.125)
    downsample = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and "downsample" in n]
    assert _count(model, nn.BatchNorm2d) == 25
    assert len(downsample) == 3


@pytest.mark.parametrize("size", [64, 96])
def test_pspnet_output_size_and_output_stride_8(size: int) -> None:
    model = PSPNet(in_channels=1, out_channels=4, width=0.125).eval()
    seen: list[tuple[int, ...]] = []
    model.backbone.layer4.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 4, size, size)
    assert seen[0][-2:] == (size // 8, size // 8)


def test_pspnet_backbone_matches_torchvision_resnet18_tensors() -> None:
    """At width 1, RGB input and no bias, a torchvision resnet18 state dict fits key for key."""
    ours = PSPNet(in_channels=3, out_channels=4, conv_bias=False).backbone.state_dict()
    theirs = {
        k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items() if not k.startswith("fc.")
    }
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_pspnet_conv_bias_switch() -> None:
    with_bias = PSPNet(width=0.125, conv_bias=True)
    without = PSPNet(width=0.125, conv_bias=False)
    assert all(m.bias is not None for m in with_bias.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is None for m in without.modules() if isinstance(m, nn.Conv2d))


def test_pspnet_loads_local_backbone_weights(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)
    model = PSPNet(in_channels=1, out_channels=4, conv_bias=True, backbone_weights=str(path))
    assert torch.equal(model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.count_nonzero(model.backbone.layer2[0].conv1.bias) == 0
    # a grey image through the adapted first conv == the same image replicated to RGB in the original
    grey = torch.randn(1, 1, 32, 32)
    ours = F.conv2d(grey, model.backbone.conv1.weight, stride=2, padding=3)
    theirs = F.conv2d(grey.repeat(1, 3, 1, 1), reference.conv1.weight, stride=2, padding=3)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_pspnet_backbone_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        PSPNet(width=0.125, backbone_weights=str(tmp_path / "missing.pt"))
    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UserError, match="width 1.0"):
        PSPNet(width=0.5, backbone_weights=str(path))


@pytest.mark.parametrize(
    "model", [UNet(in_channels=1, out_channels=4, base_width=4), PSPNet(in_channels=1, out_channels=4, width=0.125)]
)
def test_models_trace_with_torch_fx(model: nn.Module) -> None:
    """Scans rebuild per-layer subgraphs from an fx trace, so the trace must match the module."""
    model.eval()
    graph = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 1, 96, 96)
    with torch.no_grad():
        assert torch.equal(graph(x), model(x))
