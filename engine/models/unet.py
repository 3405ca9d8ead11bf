"""UNet with exactly 18 Conv+BN layers, the paper's figure 1.

Five encoder levels and four decoder levels, each a double 3x3 conv + BN + ReLU (9 levels x 2 =
18 layers); max-pool down, transposed conv up (`up1`..`up4`, no BN after them), skip connections
by concatenation, and a 1x1 `head`. Input height and width must be divisible by 16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DoubleConv(nn.Module):
    """Two 3x3 conv + BN + ReLU; each conv/BN pair is one numbered layer of the study."""

    def __init__(self, in_channels: int, out_channels: int, conv_bias: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=conv_bias)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))


class UNet(nn.Module):
    """The paper's UNet: `enc1..enc5`, `up1..up4` + `dec1..dec4`, `head`.

    Channels double at each encoder level from `base_width`; `conv_bias` switches the bias of
    every conv (the 3x3s, the up-convs and the head) on or off.
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 4, base_width: int = 32, conv_bias: bool = True
    ) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(5)]
        self.enc1 = DoubleConv(in_channels, widths[0], conv_bias)
        self.enc2 = DoubleConv(widths[0], widths[1], conv_bias)
        self.enc3 = DoubleConv(widths[1], widths[2], conv_bias)
        self.enc4 = DoubleConv(widths[2], widths[3], conv_bias)
        self.enc5 = DoubleConv(widths[3], widths[4], conv_bias)
        self.up1 = nn.ConvTranspose2d(widths[4], widths[3], 2, stride=2, bias=conv_bias)
        self.dec1 = DoubleConv(widths[3] * 2, widths[3], conv_bias)
        self.up2 = nn.ConvTranspose2d(widths[3], widths[2], 2, stride=2, bias=conv_bias)
        self.dec2 = DoubleConv(widths[2] * 2, widths[2], conv_bias)
        self.up3 = nn.ConvTranspose2d(widths[2], widths[1], 2, stride=2, bias=conv_bias)
        self.dec3 = DoubleConv(widths[1] * 2, widths[1], conv_bias)
        self.up4 = nn.ConvTranspose2d(widths[1], widths[0], 2, stride=2, bias=conv_bias)
        self.dec4 = DoubleConv(widths[0] * 2, widths[0], conv_bias)
        self.head = nn.Conv2d(widths[0], out_channels, 1, bias=conv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        e5 = self.enc5(F.max_pool2d(e4, 2))
        d1 = self.dec1(torch.cat([self.up1(e5), e4], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d1), e3], dim=1))
        d3 = self.dec3(torch.cat([self.up3(d2), e2], dim=1))
        d4 = self.dec4(torch.cat([self.up4(d3), e1], dim=1))
        return self.head(d4)
