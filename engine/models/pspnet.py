"""PSPNet on a torchvision ResNet-18 with exactly 25 BN layers, the paper's figure 2.

The backbone is `torchvision.models.resnet18(weights=None)` with every conv and BN rebuilt: the
first conv takes `in_channels`, widths scale by `width`, every conv gets a bias when
`conv_bias` (the paper's "PSPNet-b"), and layer3/layer4 use dilation 2/4 instead of stride 2
(output stride 8, as in the PSPNet paper; torchvision's `replace_stride_with_dilation` refuses
BasicBlock). Then pyramid pooling (bins 1, 2, 3, 6; 1x1 conv + BN + ReLU each), a 3x3
bottleneck conv + BN + ReLU, dropout, a 1x1 `head`, and bilinear upsampling to the input size.
BN layers in forward order: 20 in ResNet-18 (3 in downsample branches), 4 pyramid, 1 bottleneck.

BatchNorm on the 1x1 pyramid bin needs more than one image per batch in training mode.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reuse_console.store.errors import UserError

BINS: tuple[int, ...] = (1, 2, 3, 6)
_DILATION = {"layer3": 2, "layer4": 4}


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A Conv2d setting (kernel, stride, ...) as its constructor types it: torch types the
    attribute as tuple[int, ...], though a Conv2d always holds two."""
    return value[0], value[1]


def resnet18_trunk(in_channels: int, width: float = 1.0, conv_bias: bool = False) -> torchvision.models.ResNet:
    """torchvision's ResNet-18 with its convs/BNs rebuilt for our inputs, widths, bias, dilation.

    Module paths and (at width 1.0, 3 input channels, no bias) tensor shapes equal torchvision's,
    so a torchvision state dict loads into it. `avgpool` and `fc` are removed.
    """
    net = torchvision.models.resnet18(weights=None)
    del net.avgpool, net.fc
    for name, module in list(net.named_modules()):
        if isinstance(module, nn.Conv2d):
            stride, dilation = _pair(module.stride), _pair(module.dilation)
            padding = module.padding if isinstance(module.padding, str) else _pair(module.padding)
            stage = name.split(".", 1)[0]
            if stage in _DILATION:
                stride = (1, 1)
                if module.kernel_size == (3, 3):
                    d = _DILATION[stage]
                    dilation, padding = (d, d), (d, d)
            conv = nn.Conv2d(
                in_channels if name == "conv1" else _scaled(module.in_channels, width),
                _scaled(module.out_channels, width),
                _pair(module.kernel_size),
                stride=stride,
                padding=padding,
                dilation=dilation,
                bias=conv_bias,
            )
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            net.set_submodule(name, conv)
        elif isinstance(module, nn.BatchNorm2d):
            net.set_submodule(name, nn.BatchNorm2d(_scaled(module.num_features, width)))
    return net


class PyramidBranch(nn.Module):
    """Average-pool to `bin` x `bin`, 1x1 conv + BN + ReLU, upsample back to the feature size."""

    def __init__(self, bin_size: int, in_channels: int, out_channels: int, conv_bias: bool) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(bin_size)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn(self.conv(self.pool(x))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class PSPNet(nn.Module):
    """`backbone` (ResNet-18 trunk), `ppm.0..3`, `bottleneck`, `head`; 25 BN layers."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 4,
        conv_bias: bool = True,
        width: float = 1.0,
        dropout: float = 0.1,
        backbone_weights: str | None = None,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise UserError(f"pspnet width must be positive, got {width}")
        self.backbone = resnet18_trunk(in_channels, width, conv_bias)
        features = _scaled(512, width)
        branch = max(1, features // len(BINS))
        self.ppm = nn.ModuleList(PyramidBranch(b, features, branch, conv_bias) for b in BINS)
        self.bottleneck = nn.Sequential()
        self.bottleneck.add_module(
            "conv", nn.Conv2d(features + branch * len(BINS), _scaled(256, width), 3, padding=1, bias=conv_bias)
        )
        self.bottleneck.add_module("bn", nn.BatchNorm2d(_scaled(256, width)))
        self.bottleneck.add_module("relu", nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(_scaled(256, width), out_channels, 1, bias=conv_bias)
        if backbone_weights:
            load_backbone_weights(self.backbone, Path(backbone_weights), in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        f = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        f = b.layer4(b.layer3(b.layer2(b.layer1(f))))
        pooled = [f] + [branch(f) for branch in self.ppm]
        y = self.head(self.dropout(self.bottleneck(torch.cat(pooled, dim=1))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_backbone_weights(trunk: nn.Module, path: Path, in_channels: int) -> None:
    """Load a local torchvision resnet18 state dict into `trunk` (nothing is downloaded).

    `fc.*` is ignored; a 3-channel `conv1` is adapted to `in_channels` by averaging over RGB and
    repeating, scaled so a grey image replicated to RGB gives the same response. Conv biases that
    the file lacks start at zero, so the pretrained function is unchanged.
    """
    if not path.is_file():
        raise UserError(f"backbone weights {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read backbone weights {path} as a plain state dict: {exc}") from exc
    if not isinstance(state, dict):
        raise UserError(f"backbone weights {path} hold a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    conv1 = state.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and conv1.ndim == 4 and conv1.shape[1] != in_channels:
        state["conv1.weight"] = conv1.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
    for key, tensor in state.items():
        if key not in own:
            raise UserError(f"backbone weights {path}: unexpected key {key!r} (is it a resnet18 state dict?)")
        if tuple(tensor.shape) != tuple(own[key].shape):
            raise UserError(
                f"backbone weights {path}: {key} has shape {tuple(tensor.shape)}, the backbone needs "
                f"{tuple(own[key].shape)} (pretrained weights need width 1.0)"
            )
    missing = [k for k in own if k not in state and not _is_conv_bias(trunk, k)]
    if missing:
        raise UserError(f"backbone weights {path}: missing key {missing[0]!r}")
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor)


def _is_conv_bias(trunk: nn.Module, key: str) -> bool:
    module_path, _, leaf = key.rpartition(".")
    return leaf == "bias" and isinstance(trunk.get_submodule(module_path), nn.Conv2d)
