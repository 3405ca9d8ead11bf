"""Tensor statistics shown on the Layers screen, checked against numpy and hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reuse_console.engine.compare.stats import layer_stats, tensor_stats
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.store.errors import UserError


def test_stats_match_numpy() -> None:
    values = np.random.default_rng(0).normal(0.3, 2.0, size=(7, 5, 3)).astype(np.float32)
    s = tensor_stats(torch.from_numpy(values), bins=8)
    x = values.astype(np.float64).ravel()
    assert s.numel == x.size
    assert s.mean == pytest.approx(x.mean(), rel=1e-12)
    assert s.std == pytest.approx(x.std(ddof=0), rel=1e-12)
    assert (s.min, s.max) == (x.min(), x.max())
    assert s.l2 == pytest.approx(np.linalg.norm(x), rel=1e-12)
    counts, _ = np.histogram(x, bins=8, range=(x.min(), x.max()))
    assert s.hist == tuple(int(c) for c in counts)
    assert sum(s.hist) == x.size


def test_hand_computed_small_tensor() -> None:
    s = tensor_stats(torch.tensor([1.0, 2.0, 3.0, 4.0]), bins=2)
    assert s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(1.25))
    assert s.l2 == pytest.approx(math.sqrt(30.0))
    assert s.hist == (2, 2)  # [1, 2.5) and [2.5, 4]


def test_constant_and_single_element_tensors() -> None:
    s = tensor_stats(torch.full((3, 3), 0.5), bins=4)
    assert s.std == 0.0 and s.min == s.max == 0.5
    assert sum(s.hist) == 9
    one = tensor_stats(torch.tensor([-2.0]))
    assert one.std == 0.0 and one.l2 == 2.0


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.head = nn.Conv2d(2, 3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn1(self.conv1(x)))


def test_layer_stats_cover_every_kind_with_rmse_to_other_model() -> None:
    torch.manual_seed(0)
    a, b = TwoLayers(), TwoLayers()
    index = LayerIndex.from_model(a, in_channels=1, size=8)
    rows = layer_stats(index, a.state_dict(), b.state_dict())
    assert [r.name for r in rows] == ["1", "head"]
    assert [k.kind for k in rows[0].kinds] == ["RM", "RV", "RW", "RB", "W", "B"]
    assert [k.kind for k in rows[1].kinds] == ["W"]
    w = rows[0].kinds[4]
    diff = (a.conv1.weight - b.conv1.weight).detach().double()
    assert w.rmse == pytest.approx(float(diff.pow(2).mean().sqrt()))
    rms = float(a.conv1.weight.detach().double().pow(2).mean().sqrt())
    assert w.rel_rmse == pytest.approx(w.rmse / rms)
    # the BN running statistics start equal (0 and 1) in both fresh models
    assert rows[0].kinds[0].rmse == 0.0 and rows[0].kinds[1].rmse == 0.0
    assert rows[0].kinds[1].rel_rmse == 0.0
    assert rows[0].kinds[0].rel_rmse is None  # RM is all zeros: no RMS to relate to
    with pytest.raises(UserError, match="differs"):
        layer_stats(index, a.state_dict(), {**b.state_dict(), "conv1.weight": torch.zeros(2, 1, 5, 5)})
    alone = layer_stats(index, a.state_dict())
    assert all(k.rmse is None for r in alone for k in r.kinds)
