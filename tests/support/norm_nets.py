"""A small model with one layer of each norm the layer index knows, for the norm tests and the CLI."""

from __future__ import annotations

import torch
from torch import nn


class MixedNorms(nn.Module):
    """BatchNorm on the input (no conv before it), then Conv+BatchNorm, Conv+InstanceNorm (affine,
    running statistics), Conv+GroupNorm, Conv+LayerNorm (over channels, channels last),
    Conv+InstanceNorm (neither), and Linear+LayerNorm (no bias). Any input size."""

    def __init__(self, in_channels: int = 1, out_channels: int = 6) -> None:
        super().__init__()
        self.inorm = nn.BatchNorm2d(in_channels)
        self.c1, self.n1 = nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.n2 = nn.Conv2d(4, 4, 3, padding=1), nn.InstanceNorm2d(4, affine=True, track_running_stats=True)
        self.c3, self.n3 = nn.Conv2d(4, 4, 3, padding=1), nn.GroupNorm(2, 4)
        self.c4, self.n4 = nn.Conv2d(4, 4, 3, padding=1), nn.LayerNorm(4)
        self.c5, self.n5 = nn.Conv2d(4, 4, 3, padding=1), nn.InstanceNorm2d(4)
        self.fc, self.fn = nn.Linear(4, out_channels), nn.LayerNorm(out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inorm(x)
        for conv, norm in ((self.c1, self.n1), (self.c2, self.n2), (self.c3, self.n3)):
            x = torch.relu(norm(conv(x)))
        x = torch.relu(self.n4(self.c4(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        x = self.n5(self.c5(x)).mean(dim=(2, 3))
        return self.fn(self.fc(x))
