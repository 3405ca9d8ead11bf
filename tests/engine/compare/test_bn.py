"""BN scale/shift: the formulas reproduce the BN module's eval-mode output, before and after a swap."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from reuse_console.engine.compare.bn import analyse, run_bn, scale_shift
from reuse_console.engine.models.layers import LayerIndex


def _bn(seed: int, channels: int = 6, eps: float = 1e-3) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=eps).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) * 2 + 0.05)
        bn.weight.copy_(torch.randn(channels, generator=g))
        bn.bias.copy_(torch.randn(channels, generator=g))
    return bn


class OneBN(nn.Module):
    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, bn.num_features, 1)
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _affine(bn: nn.BatchNorm2d, s: np.ndarray, t: np.ndarray) -> float:
    """Largest gap between the module's output and s * x + t on random input."""
    x = torch.randn(2, bn.num_features, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        y = bn.double()(x)
    want = torch.from_numpy(s)[None, :, None, None] * x + torch.from_numpy(t)[None, :, None, None]
    return float((y - want).abs().max())


def test_scale_shift_reproduces_eval_mode_bn() -> None:
    bn = _bn(0)
    sd = {k: v.double().numpy() for k, v in bn.state_dict().items()}
    s, t = scale_shift(sd["running_mean"], sd["running_var"], sd["weight"], sd["bias"], bn.eps)
    assert _affine(bn, s, t) < 1e-12


@pytest.mark.parametrize("kind,leaf", [("RM", "running_mean"), ("RV", "running_var"), ("RW", "weight"), ("RB", "bias")])
def test_single_kind_swap_effect_matches_swapped_module(kind: str, leaf: str) -> None:
    recipient, donor = OneBN(_bn(1)), OneBN(_bn(2))
    index = LayerIndex.from_model(recipient, 1, size=4)
    [result] = analyse(recipient, index, recipient.state_dict(), donor.state_dict())
    swapped = copy.deepcopy(recipient.bn)
    with torch.no_grad():
        getattr(swapped, leaf).copy_(getattr(donor.bn, leaf))
    s = result.s["recipient"] * result.ratio[kind]
    t = result.t["recipient"] + result.diff[kind]
    assert _affine(swapped, s, t) < 1e-9
    if kind in ("RM", "RB"):
        np.testing.assert_allclose(result.ratio[kind], 1.0)
    if kind == "RV":  # the closed form of the theory section
        rv_r, rv_d = recipient.bn.running_var.double().numpy(), donor.bn.running_var.double().numpy()
        np.testing.assert_allclose(result.ratio[kind], np.sqrt((rv_r + 1e-3) / (rv_d + 1e-3)), rtol=1e-12)
    summary = result.summary()["swaps"][kind]
    assert summary["shift_diff_max_abs"] == pytest.approx(np.abs(result.diff[kind]).max())


def test_bn_in_lab_covers_every_bn_layer(lab) -> None:
    from swap_lab import make_lab

    make_lab(lab)
    study = run_bn(lab, "seg", "ae")
    assert study.note is None  # every layer is Conv+BatchNorm2d
    layers = study.layers
    assert [layer.index for layer in layers] == list(range(1, 19))
    assert set(layers[0].ratio) == {"RM", "RV", "RW", "RB"}
