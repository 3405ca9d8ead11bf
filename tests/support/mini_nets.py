"""Small models for the swap/partial/scan tests: a UNet-like net with skip connections, a
ResNet-like net with residual adds and in-place ReLUs, one that uses a parameter directly
(fx get_attr), one whose forward branches on tensor values (does not trace), and one that
traces into a graph that raises on real input."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.swaps.variants import Variant


def conv_bn(cin: int, cout: int, bias: bool = True) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MiniUNet(nn.Module):
    """Two levels, concatenated skip connection, transposed-conv up, 1x1 head."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.enc1 = conv_bn(in_channels, width)
        self.enc2 = conv_bn(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = conv_bn(2 * width, width)
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return self.head(self.dec(torch.cat([self.up(e2), e1], dim=1)))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class MiniResNet(nn.Module):
    """Stem, two residual blocks (one with a downsample branch), bilinear upsampled head."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: int = 4) -> None:
        super().__init__()
        self.stem = conv_bn(in_channels, width)
        self.block1 = Block(width, width, 1)
        self.block2 = Block(width, 2 * width, 2)
        self.head = nn.Conv2d(2 * width, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.block2(self.block1(self.stem(x))))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class DirectParam(nn.Module):
    """Uses its own weight through F.conv2d (an fx get_attr node), then a BN layer."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, in_channels, 3, 3) * 0.3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.bn(F.conv2d(x, self.weight, padding=1))))


class Untraceable(MiniUNet):
    """Branches on a tensor value, which torch.fx cannot trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        if e1.mean() > -1e9:
            e1 = e1 * 1.0
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return self.head(self.dec(torch.cat([self.up(e2), e1], dim=1)))


class TracesWrong(MiniUNet):
    """Traces without error into a graph that raises: torch.jit.isinstance is False for an fx proxy,
    so the trace drops the skip connection and feeds `dec` half its channels (as MONAI's UpCat
    does, but in the model's own forward, so no module can be kept whole instead)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        up = self.up(self.enc2(F.max_pool2d(e1, 2)))
        if torch.jit.isinstance(e1, torch.Tensor):
            up = torch.cat([up, e1], dim=1)
        return self.head(self.dec(up))


def randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Give every BN non-trivial running stats and affine values (fresh BNs are identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.3)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def pair(cls: type[nn.Module], seed: int = 0, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A recipient and a donor of the same architecture with different tensors."""
    torch.manual_seed(seed)
    recipient = randomise_bn(cls(**kwargs), seed)
    torch.manual_seed(seed + 100)
    donor = randomise_bn(cls(**kwargs), seed + 100)
    return recipient, donor


def naive_output(model: nn.Module, donor_state: dict, keys: list[str], alpha: float, x: torch.Tensor) -> torch.Tensor:
    """The obvious way: deep copy, load a state dict with the swapped tensors, full forward."""
    ref = copy.deepcopy(model)
    state = ref.state_dict()
    for key in keys:
        state[key] = (1 - alpha) * state[key] + alpha * donor_state[key] if alpha != 1 else donor_state[key]
    ref.load_state_dict(state)
    with torch.no_grad():
        return ref.eval()(x)


def labelled_batches(model: nn.Module, *, classes: int, n: int = 2, size: int = 64) -> list[EvalBatch]:
    """Images with labels the recipient mostly gets right (its own prediction, a quarter replaced
    by noise), three slices a batch over two subjects: swaps then move Dice visibly."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(n):
        images = torch.randn(3, 1, size, size, generator=g)
        with torch.no_grad():
            labels = model.eval()(images).argmax(1)
        labels[:, : size // 4] = torch.randint(0, classes, (3, size // 4, size), generator=g)
        out.append(EvalBatch(images, labels, torch.tensor([i, i, 1 - i])))
    return out


def naive_dice(
    model: nn.Module, donor_state: dict, variant: Variant, batches: list[EvalBatch], *, classes: int, subjects: int = 2
) -> np.ndarray:
    """The obvious scan of one variant: deep copy, load a state dict with the variant's tensors
    moved towards the donor's (lerp, exact at alpha 1), full forward; Dice per subject and class."""
    ref = copy.deepcopy(model)
    state = ref.state_dict()
    for key in variant.keys:
        state[key] = torch.lerp(state[key], donor_state[key].to(state[key].dtype), variant.alpha)
    ref.load_state_dict(state)
    acc = DiceAccumulator(classes, subjects)
    with torch.no_grad():
        for b in batches:
            acc.update(ref.eval()(b.images).argmax(1), b.labels, b.subject)
    return acc.per_subject()


def unet_or_pspnet_pair(arch: str) -> tuple[nn.Module, nn.Module]:
    """Tiny built-in UNet (base width 4) or PSPNet (width 0.125) recipient and donor, BN randomised."""
    from reuse_console.engine.models.pspnet import PSPNet
    from reuse_console.engine.models.unet import UNet

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        model = UNet(1, 4, base_width=4) if arch == "unet" else PSPNet(1, 4, width=0.125)
        return randomise_bn(model, seed)

    return build(1), build(2)
