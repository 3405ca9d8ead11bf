"""Swaps: in-place apply gives the donor (or the interpolation), restore is bit-exact, and
incompatible models are refused naming the first mismatching tensor."""

from __future__ import annotations

import pytest
import torch
from mini_nets import MiniUNet, pair

from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.unet import UNet
from reuse_console.engine.swaps.swap import Swap, SwapSpec, check_compatible, parse_alphas
from reuse_console.store.errors import UserError


def _bits(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_apply_takes_donor_values_and_restore_is_bit_exact() -> None:
    recipient, donor = pair(MiniUNet)
    donor_state = donor.state_dict()
    before = _bits(recipient)
    keys = ["enc1.1.running_mean", "enc1.1.running_var", "dec.0.weight", "head.bias"]
    for alpha in (1.0, 0.3, 0.0, 0.7):
        swap = Swap(recipient, donor_state, keys, alpha)
        swap.apply()
        now = recipient.state_dict()
        for key in keys:
            r, d = before[key].double(), donor_state[key].double()
            want = r + alpha * (d - r)  # the interpolation by hand, in float64
            assert torch.allclose(now[key].double(), want, rtol=0, atol=1e-6)
            if alpha == 1.0:
                assert torch.equal(now[key], donor_state[key])
        untouched = [k for k in before if k not in keys]
        assert all(torch.equal(now[k], before[k]) for k in untouched)
        swap.restore()
        after = recipient.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before), f"restore not exact at alpha {alpha}"


def test_swap_is_in_place_and_context_manager_restores_after_error() -> None:
    recipient, donor = pair(MiniUNet)
    weight = recipient.dec[0].weight
    ptr, before = weight.data_ptr(), weight.detach().clone()
    with pytest.raises(ValueError), Swap(recipient, donor.state_dict(), ["dec.0.weight"]):
        assert recipient.dec[0].weight.data_ptr() == ptr
        assert torch.equal(recipient.dec[0].weight, donor.dec[0].weight)
        raise ValueError("boom")
    assert recipient.dec[0].weight is weight and torch.equal(weight, before)


def test_check_compatible_names_first_mismatching_tensor() -> None:
    a = UNet(1, 4, base_width=4).state_dict()
    b = UNet(1, 4, base_width=4).state_dict()
    check_compatible(a, b, recipient_arch="unet", donor_arch="unet")
    wider = UNet(1, 4, base_width=8).state_dict()
    with pytest.raises(UserError, match=r"^tensor enc1\.conv1\.weight differs: shape \(4, 1, 3, 3\)"):
        check_compatible(a, wider)
    fewer = {k: v for k, v in b.items() if k != "enc2.bn1.running_var"}
    with pytest.raises(UserError, match="donor has no tensor enc2.bn1.running_var"):
        check_compatible(a, fewer)
    with pytest.raises(UserError, match="the recipient is a unet but the donor is a pspnet"):
        check_compatible(a, b, recipient_arch="unet", donor_arch="pspnet")
    no_bias = UNet(1, 4, base_width=4, conv_bias=False).state_dict()
    with pytest.raises(UserError, match="donor has no tensor enc1.conv1.bias"):
        check_compatible(a, no_bias)


def test_spec_from_selections() -> None:
    index = LayerIndex.from_model(UNet(1, 4, base_width=4), 1)
    spec = SwapSpec.parse("seg", "ae", index, "1-2,head", "rm,W", alpha=0.5)
    assert spec.targets == (("1", "RM"), ("1", "W"), ("2", "RM"), ("2", "W"), ("head", "W"))
    assert spec.keys(index)[:2] == ["enc1.bn1.running_mean", "enc1.conv1.weight"]
    assert spec.describe()["layers"] == ["1", "2", "head"]
    with pytest.raises(UserError, match="nothing to swap"):
        SwapSpec.parse("seg", "ae", index, "head", "RM")
    with pytest.raises(UserError, match="outside"):
        SwapSpec.parse("seg", "ae", index, "1", "RM", alpha=1.5)


def test_parse_alphas() -> None:
    assert parse_alphas("1") == (1.0,)
    assert parse_alphas("0, 0.25,0.5,0.75,1,1") == (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(UserError, match="bad alpha"):
        parse_alphas("0,half")
    with pytest.raises(UserError, match="outside"):
        parse_alphas("-0.5")
