"""Folded conv -> batch norm: the same function as the two modules (checked against them run
apart and against the naive swapped copy), every swap honoured, and in bf16 much closer to fp32."""

from __future__ import annotations

import pytest
import torch
from mini_nets import DirectParam, MiniResNet, MiniUNet, naive_output, pair
from torch import nn

from reuse_console.engine.swaps.fold import ConvChain
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.swap import Swap


def _conv_norm(dims: int, bias: bool, affine: bool) -> tuple[nn.Module, nn.Module]:
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1](3, 5, 3, padding=1, bias=bias)
    norm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[dims - 1](5, affine=affine)
    g = torch.Generator().manual_seed(dims)
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(5, generator=g))
        norm.running_var.copy_(torch.rand(5, generator=g) + 0.1)
        if affine:
            norm.weight.copy_(torch.randn(5, generator=g))
            norm.bias.copy_(torch.randn(5, generator=g))
    return conv, norm.eval()


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(("bias", "affine"), [(True, True), (False, True), (True, False), (False, False)])
def test_folded_equals_the_modules_run_apart(dims: int, bias: bool, affine: bool) -> None:
    conv, norm = _conv_norm(dims, bias, affine)
    fused = ConvChain(conv, "c", norm, "n")
    x = torch.randn(2, 3, *([6] * dims))
    assert fused.folds()
    with torch.no_grad():
        assert torch.allclose(fused(x), norm(conv(x)), atol=1e-5, rtol=1e-5)
        # the fold reads the live tensors: a swap in place is seen at the next call
        norm.running_mean.add_(3.0)
        conv.weight.mul_(-2.0)
        assert torch.allclose(fused(x), norm(conv(x)), atol=1e-4, rtol=1e-5)


def test_train_mode_norms_and_hooked_modules_run_unfolded() -> None:
    conv, norm = _conv_norm(2, True, True)
    fused = ConvChain(conv, "c", norm, "n")
    x = torch.randn(4, 3, 6, 6)
    norm.train()  # recalibration: batch statistics, running ones updated
    assert not fused.folds()
    with torch.no_grad():
        assert torch.equal(fused(x), nn.functional.batch_norm(conv(x), None, None, norm.weight, norm.bias, True))
    norm.eval()
    handle = conv.register_forward_hook(lambda m, a, out: out * 0)  # e.g. the fp32 class-score hook
    assert not fused.folds()
    with torch.no_grad():
        assert torch.equal(fused(x), norm(torch.zeros_like(conv(x))))
    handle.remove()
    assert fused.folds()


@pytest.mark.parametrize("cls", [MiniUNet, MiniResNet, DirectParam])
def test_every_single_tensor_swap_through_folded_layers_matches_naive(cls: type) -> None:
    recipient, donor = pair(cls)
    donor_state = donor.state_dict()
    groups: dict[str, list[str]] = {}
    for key, t in recipient.state_dict().items():
        if t.is_floating_point():
            groups.setdefault(key.rpartition(".")[0] or key, []).append(key)
    engine = PartialForward(recipient, groups, fold=True)
    assert engine.partial
    if cls is not DirectParam:
        assert engine.owners, "the conv -> BN pairs were folded"
    x = torch.randn(3, 1, 16, 16)
    worst, seen = 0.0, 0

    def visit(name: str, downstream) -> None:
        nonlocal worst, seen
        for key in groups[name]:
            with Swap(recipient, donor_state, [key], 1.0):
                got = downstream.run()
            want = naive_output(recipient, donor_state, [key], 1.0, x)
            worst = max(worst, float((got - want).abs().max()))
            seen += 1

    with torch.inference_mode():
        baseline = engine.run(x, visit)
        assert torch.allclose(baseline, recipient(x), atol=1e-5)
    assert seen == sum(len(k) for k in groups.values())
    assert worst < 1e-4


def test_bf16_fold_removes_the_cancellation_error() -> None:
    """A channel whose mean is large against its std: bf16 rounds the conv output before the norm
    subtracts the mean, and the normalised value is off by far more than bf16's 0.4%."""
    conv, norm = _conv_norm(2, True, True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, 12, 12, generator=g) * 0.05 + 1.0  # conv output ~ its bias plus small wiggles
    with torch.no_grad():
        conv.bias.fill_(40.0)
        out = conv(x)
        norm.running_mean.copy_(out.mean(dim=(0, 2, 3)))
        norm.running_var.copy_(out.var(dim=(0, 2, 3)))
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        exact = norm(conv(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            apart = norm(conv(x)).float()
            folded = ConvChain(conv, "c", norm, "n")(x).float()
    err_apart = float((apart - exact).abs().max())
    err_folded = float((folded - exact).abs().max())
    assert err_folded < 0.1 < err_apart
    assert err_folded * 10 < err_apart


class _ConvActs(nn.Module):
    """Conv -> ReLU module, conv -> F.relu, conv -> LeakyReLU, conv -> BN -> ReLU(inplace)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3, self.c4 = (nn.Conv2d(c, 8, 3, padding=1) for c in (1, 8, 8, 8))
        self.act1, self.act3 = nn.ReLU(), nn.LeakyReLU(0.1)
        self.bn4, self.act4 = nn.BatchNorm2d(8).eval(), nn.ReLU(inplace=True)
        with torch.no_grad():
            self.bn4.running_mean.uniform_(-1, 1)
            self.bn4.running_var.uniform_(0.5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.c1(x))
        x = nn.functional.relu(self.c2(x))
        x = self.act3(self.c3(x))
        return self.act4(self.bn4(self.c4(x)))


@pytest.mark.parametrize("fold", [False, True])
def test_activations_fused_into_the_convolution_give_the_same_bits(fold: bool) -> None:
    """ReLU and leaky ReLU applied by oneDNN inside the convolution: the very values eager gives
    in fp32; under bf16 autocast oneDNN rounds once, after the leaky ReLU's multiply, where eager
    rounds before and after it, so values may differ by a bf16 rounding (the BN only folds with
    `fold`, and then to rounding)."""
    model = _ConvActs().eval()
    engine = PartialForward(model, {"c1": ["c1.weight"]}, fold=fold)
    assert len(engine.owners) == 4 if fold else 3
    x = torch.randn(2, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for precision in (torch.float32, torch.bfloat16):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == torch.bfloat16):
                got, want = engine.run(x, lambda name, part: None), model(x)
            if precision == torch.bfloat16:
                assert torch.allclose(got.float(), want.float(), rtol=2**-6, atol=0.05 if fold else 2**-8)
            elif fold:
                assert torch.allclose(got, want, atol=1e-5)
            else:
                assert torch.equal(got, want)


def test_a_hooked_activation_runs_as_built() -> None:
    model = _ConvActs().eval()
    engine = PartialForward(model, {"c1": ["c1.weight"]})
    x = torch.randn(2, 1, 12, 12)
    model.act1.register_forward_hook(lambda m, a, out: out * 0 + 1)
    with torch.inference_mode():
        assert torch.equal(engine.run(x, lambda name, part: None), model(x))
