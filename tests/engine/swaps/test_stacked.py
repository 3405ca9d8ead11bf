"""Stacked variants (engine/swaps/stacked.py): K variants in one vmapped downstream pass give the
naive loop's Dice in fp32 for every kind (folded and unfolded norms, UNet, PSPNet, a ResNet, a
torchvision and an smp model), logits within 1e-5 of the one-at-a-time loop's; bf16 errs no more
than the loop; a model the stacked path cannot run, a wrong stacked output, or running out of
memory falls back with a message and the same Dice. CUDA tests are skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mini_nets import (
    DirectParam,
    MiniResNet,
    MiniUNet,
    Untraceable,
    labelled_batches,
    naive_dice,
    pair,
    randomise_bn,
    unet_or_pspnet_pair,
)

from reuse_console.engine.core.device import exact_fp32
from reuse_console.engine.core.events import Message, silent
from reuse_console.engine.evaluation.precision import exact_heads
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.swaps import stacked
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.stacked import Stacker, check_stack, stacker_for
from reuse_console.engine.swaps.swap import Swap, donor_like
from reuse_console.engine.swaps.variants import Variant, plan_variants
from reuse_console.store.errors import UserError

CPU = torch.device("cpu")
KINDS = ("RM", "RV", "RW", "RB", "W", "B")


def cuda(test):
    """A test that needs a CUDA GPU: marked gpu (bench/gpu.sh runs them), skipped without one."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


def _models(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    if name in ("unet", "pspnet"):
        return unet_or_pspnet_pair(name)
    return pair({"mini-unet": MiniUNet, "mini-resnet": MiniResNet}[name], width=4)


def _all_variants(model: torch.nn.Module, alphas: tuple[float, ...] = (1.0, 0.5), every: int = 1) -> list[Variant]:
    """Every kind at every alpha of every `every`-th layer and the last (the head)."""
    layers = LayerIndex.from_model(model, 1).layers
    return plan_variants([*layers[:-1:every], layers[-1]], KINDS, alphas)


def _scan(model, donor, variants, batches, classes: int, **kwargs):
    names = [f"c{i}" for i in range(classes)]
    return evaluate_variants(
        model,
        donor.state_dict(),
        variants,
        batches,
        classes=names,
        present=[True] * classes,
        num_subjects=2,
        device=kwargs.pop("device", CPU),
        **kwargs,
    )


def _stacked_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the variants each stacked pass evaluated (so a test knows stacking really ran)."""
    sizes: list[int] = []
    run = Stacker._run

    def counted(self, chunk, downstream):
        out = run(self, chunk, downstream)
        sizes.append(len(chunk))
        return out

    monkeypatch.setattr(Stacker, "_run", counted)
    return sizes


@pytest.mark.parametrize("name", ["unet", "pspnet", "mini-resnet"])
def test_stacked_dice_equal_the_naive_loop_for_every_kind(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recipient, donor = _models(name)
    classes = 4 if name in ("unet", "pspnet") else 3
    batches = labelled_batches(recipient, classes=classes)
    variants = _all_variants(recipient, every=3)  # every kind, both alphas, layers spread over the net
    assert {v.kind for v in variants} == set(KINDS) and {v.alpha for v in variants} == {1.0, 0.5}
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=classes) for v in variants])
    sizes = _stacked_runs(monkeypatch)
    events: list = []
    base, dice, engine = _scan(recipient, donor, variants, batches, classes, stack=4, report=events.append)
    assert engine == "partial" and sum(sizes) > len(variants)  # most variants went through stacks, every batch
    assert not [e for e in events if isinstance(e, Message) and "stacked" in e.text]  # no fallback
    np.testing.assert_array_equal(dice, want)
    assert np.abs(dice - base).max() > 0.01  # the variants really change predictions


def _stacked_and_looped(
    model: torch.nn.Module,
    donor: torch.nn.Module,
    variants: list[Variant],
    x: torch.Tensor,
    fold: bool = True,
    device: torch.device = CPU,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor], Stacker, PartialForward]:
    """Each variant's output on `x` through stacks of 4 and one at a time (the loop), as a scan runs
    them (on CUDA without TF32, as an fp32 scan)."""
    model = model.to(device, memory_format=torch.channels_last)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    live = donor_like(donor.state_dict(), model, sorted({k for v in variants for k in v.keys}))
    by_group: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        by_group.setdefault(v.group, []).append(i)
    keys = {g: [k for i in ids for k in variants[i].keys] for g, ids in by_group.items()}
    engine = PartialForward(model, keys, fold=fold)
    stacker = Stacker(model, live, variants, stack=4, precision="fp32", device=device, report=silent)
    got: dict[int, torch.Tensor] = {}
    want: dict[int, torch.Tensor] = {}

    def visit(group: str, downstream) -> None:
        left = stacker.evaluate(group, by_group[group], downstream, lambda i, out: got.__setitem__(i, out.clone()))
        assert len(left) <= 1 or group in stacker.looped  # at most a last single one is left to the loop
        for i in by_group[group]:
            with Swap(model, live, variants[i].keys, variants[i].alpha):
                want[i] = downstream.run()

    with torch.inference_mode(), exact_fp32(device, "fp32"):
        engine.verify(x)
        engine.run(x, visit)
    return got, want, stacker, engine


def _same_up_to_ties(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Within 1e-5 of the output's scale, and the same class wherever the loop's two best scores do
    not tie within 1e-5 of the pixel's own scale (fp32 rounding)."""
    scale = max(float(want.abs().max()), 1.0)
    assert float((got - want).abs().max()) <= 1e-5 * scale, what
    top2 = want.topk(2, dim=1).values
    tie = (top2[:, 0] - top2[:, 1]) <= 1e-5 * top2[:, 0].abs().clamp(min=1.0)
    assert torch.equal(got.argmax(1)[~tie], want.argmax(1)[~tie]), what


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("name", ["unet", "pspnet", "mini-unet", "mini-resnet"])
def test_stacked_logits_are_the_loops_within_1e_5(name: str, fold: bool) -> None:
    recipient, donor = _models(name)
    variants = _all_variants(recipient)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    got, want, stacker, engine = _stacked_and_looped(recipient, donor, variants, x, fold)
    assert engine.partial and not stacker.looped and len(got) > len(variants) // 2
    for i, out in got.items():
        _same_up_to_ties(out, want[i], variants[i].id)


@pytest.mark.parametrize("name", ["unet", "pspnet"])
def test_bf16_stacked_errs_no_more_than_the_bf16_loop(name: str) -> None:
    recipient, donor = _models(name)
    model = recipient.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    variants = _all_variants(model, (1.0,))
    live = donor_like(donor.state_dict(), model, sorted({k for v in variants for k in v.keys}))
    by_group: dict[str, list[int]] = {}
    for i, v in enumerate(variants):
        by_group.setdefault(v.group, []).append(i)
    engine = PartialForward(
        model, {g: [k for i in ids for k in variants[i].keys] for g, ids in by_group.items()}, fold=True
    )
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(5)).contiguous(
        memory_format=torch.channels_last
    )
    exact: dict[int, torch.Tensor] = {}

    def fp32(group: str, downstream) -> None:
        for i in by_group[group]:
            with Swap(model, live, variants[i].keys):
                exact[i] = downstream.run().float()

    with torch.inference_mode():
        engine.run(x, fp32)
    stacker = Stacker(model, live, variants, stack=8, precision="bf16", device=CPU, report=silent)
    loop, stack = [], []
    dtypes: dict[int, tuple[torch.dtype, ...]] = {}

    def bf16(group: str, downstream) -> None:
        def take(i: int, out: torch.Tensor) -> None:
            dtypes[i] = (out.dtype,)
            stack.append(float((out.float() - exact[i]).norm() / exact[i].norm()))

        stacker.evaluate(group, by_group[group], downstream, take)
        for i in by_group[group]:
            with Swap(model, live, variants[i].keys):
                out = downstream.run()
            dtypes[i] = (*dtypes.get(i, ()), out.dtype)
            loop.append(float((out.float() - exact[i]).norm() / exact[i].norm()))

    with exact_heads(model, 4, "bf16"), torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        engine.run(x, bf16)
    assert not stacker.looped and len(stack) > len(loop) // 2
    assert all(len(set(d)) == 1 for d in dtypes.values())  # the class-score hook (exact_heads) acts alike
    assert max(stack) <= 1.5 * max(loop) and np.mean(stack) <= 1.2 * np.mean(loop)
    assert 0 < max(loop) < 0.02  # bf16 rounding, no more


def test_a_model_vmap_cannot_run_falls_back_to_the_loop_with_a_message() -> None:
    recipient, donor = pair(Untraceable, width=4)  # full forward per variant; branches on a tensor value
    batches = labelled_batches(recipient, classes=3, size=32)
    variants = _all_variants(recipient, (1.0,))
    events: list = []
    _, dice, engine = _scan(recipient, donor, variants, batches, 3, stack=4, report=events.append)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    assert engine.startswith("full")
    np.testing.assert_array_equal(dice, want)
    assert any(isinstance(e, Message) and "one at a time instead" in e.text for e in events)


def test_a_stacked_output_that_differs_from_the_loop_is_not_used() -> None:
    """DirectParam reads its weight through an fx get_attr of the traced module, which the
    reparametrised model does not reach: the stacked run gives the unswapped output, the check
    against the loop catches it, and the loop's Dice are kept."""
    recipient, donor = pair(DirectParam)
    batches = labelled_batches(recipient, classes=3, size=32)
    variants = [Variant("w", "W", a, ("weight",), None, ("",)) for a in (1.0, 0.5, 0.25)]
    events: list = []
    _, dice, _ = _scan(recipient, donor, variants, batches, 3, stack=4, report=events.append)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    np.testing.assert_array_equal(dice, want)
    assert any(isinstance(e, Message) and "differs from the loop's" in e.text for e in events)


def test_out_of_memory_halves_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    recipient, donor = unet_or_pspnet_pair("unet")
    batches = labelled_batches(recipient, classes=4, size=32)
    variants = _all_variants(recipient)[:24]
    sizes: list[int] = []
    run = Stacker._run

    def small_memory(self, chunk, downstream):
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(len(chunk))
        return run(self, chunk, downstream)

    monkeypatch.setattr(Stacker, "_run", small_memory)
    events: list = []
    _, dice, _ = _scan(recipient, donor, variants, batches, 4, stack=8, report=events.append)
    _, want, _ = _scan(recipient, donor, variants, batches, 4, stack=1)
    np.testing.assert_array_equal(dice, want)
    texts = [e.text for e in events if isinstance(e, Message) and "out of memory" in e.text]
    assert texts == [
        "stacked variants: out of memory, 4 per pass from now on",
        "stacked variants: out of memory, 2 per pass from now on",
    ]
    assert sizes and set(sizes) == {2}


def test_stack_option_and_device_defaults() -> None:
    with pytest.raises(UserError, match="at least 1"):
        check_stack(0)
    model, donor = unet_or_pspnet_pair("unet")
    args = (model, donor.state_dict(), [])
    assert stacker_for(*args, stack=None, precision="fp32", device=CPU, report=silent) is None  # CPU: one at a time
    assert stacker_for(*args, stack=3, precision="fp32", device=CPU, report=silent).stack == 3
    assert stacked.default_stack(torch.device("cuda")) == stacked.CUDA_STACK


def test_scan_stack_reaches_the_engine_and_keeps_the_dice(lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """`scan --stack K` (run_scan's `stack`) stacks, and stores the Dice of a scan without it."""
    from swap_lab import make_lab

    from reuse_console.engine.swaps.scan_lab import run_scan

    make_lab(lab)
    one = run_scan(lab, "seg", "ae", "toy", layers="1-4,head", alphas=(1.0, 0.5), device="cpu", name="one")
    sizes = _stacked_runs(monkeypatch)
    four = run_scan(lab, "seg", "ae", "toy", layers="1-4,head", alphas=(1.0, 0.5), device="cpu", name="four", stack=4)
    assert sizes and max(sizes) == 4
    np.testing.assert_array_equal(four.dice, one.dice)
    np.testing.assert_array_equal(four.baseline, one.baseline)


def test_exact_fp32_turns_tf32_off_on_cuda_only_and_restores_it() -> None:
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = True
        with exact_fp32(torch.device("cuda"), "bf16"), exact_fp32(CPU, "fp32"):
            assert all(f.allow_tf32 for f in flags)
        with exact_fp32(torch.device("cuda"), "fp32"):  # only the flags: no GPU needed
            assert not any(f.allow_tf32 for f in flags)
        assert all(f.allow_tf32 for f in flags)
    finally:
        for f, s in zip(flags, saved):
            f.allow_tf32 = s


def test_torchvision_and_smp_models_stack_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Third-party models, all kinds of 5 layers each: torchvision's LR-ASPP (hardswish,
    squeeze-excitation, dict output through the adapter) gives the naive loop's Dice; an smp UNet
    (whose graph does not verify: a full forward per pass) the loop's logits up to fp32 ties, its
    residual blocks' in-place adds onto an unstacked tensor sent back to the loop with a message."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    from reuse_console.engine.models.adapters import IOAdapter, adapt

    def five_layers(model: torch.nn.Module) -> list[Variant]:
        layers = LayerIndex.from_model(model, 1, size=64).layers
        return plan_variants(layers[:: max(1, len(layers) // 5)], KINDS, (1.0,))

    def lraspp(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        tv = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
        return randomise_bn(adapt(tv, IOAdapter(input="repeat", channels=3)), seed)

    def smp_unet(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return randomise_bn(smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=3), seed)

    recipient, donor = lraspp(1), lraspp(2)
    batches = labelled_batches(recipient, classes=3, n=1, size=64)
    variants = five_layers(recipient)
    sizes = _stacked_runs(monkeypatch)
    _, dice, engine = _scan(recipient, donor, variants, batches, 3, stack=4)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    assert engine == "partial" and sum(sizes) > len(variants) // 2
    np.testing.assert_array_equal(dice, want)

    smp = pytest.importorskip("segmentation_models_pytorch")
    recipient, donor = smp_unet(1), smp_unet(2)
    variants = five_layers(recipient)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    got, looped, stacker, engine = _stacked_and_looped(recipient, donor, variants, x)
    assert not engine.partial and len(got) > len(variants) // 2
    assert all("doesn't match the broadcast shape" in why for why in stacker.looped.values())
    for i, out in got.items():
        _same_up_to_ties(out, looped[i], variants[i].id)


# -- CUDA ----------------------------------------------------------------------------------------------


@cuda
@pytest.mark.parametrize("name", ["unet", "pspnet"])
def test_cuda_stacked_fp32_is_the_loop_up_to_ties_and_bf16_stays_close(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cuda = torch.device("cuda")
    recipient, donor = _models(name)
    variants = _all_variants(recipient)
    batches = labelled_batches(recipient, classes=4)  # labelled on the CPU
    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    got, looped, stacker, engine = _stacked_and_looped(recipient, donor, variants, x, device=cuda)
    assert engine.partial and not stacker.looped and len(got) > len(variants) // 2
    for i, out in got.items():
        _same_up_to_ties(out, looped[i], variants[i].id)
    sizes = _stacked_runs(monkeypatch)
    events: list = []
    base, stacked_dice, used = _scan(recipient, donor, variants, batches, 4, device=cuda, report=events.append)
    assert used == "partial" and sizes and max(sizes) > 1  # the CUDA default stacks
    assert not [e for e in events if isinstance(e, Message) and "stacked" in e.text]
    _, loop_dice, _ = _scan(recipient, donor, variants, batches, 4, device=cuda, stack=1)
    assert np.abs(stacked_dice - loop_dice).max() <= 1e-3  # equal but for a tied pixel or two
    assert np.abs(stacked_dice - base).max() > 0.01
    _, bf16, _ = _scan(recipient, donor, variants, batches, 4, device=cuda, precision="bf16")
    assert np.abs(bf16 - loop_dice).max() < 0.05


@cuda
def test_cuda_fp32_scan_runs_without_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    recipient, donor = _models("unet")
    variants = _all_variants(recipient)[:12]
    batches = labelled_batches(recipient, classes=4, size=32)
    seen: list[bool] = []
    run = Stacker._run

    def spy(self, chunk, downstream):
        seen.append(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
        return run(self, chunk, downstream)

    monkeypatch.setattr(Stacker, "_run", spy)
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True
    try:
        _scan(recipient.to(cuda), donor, variants, batches, 4, device=cuda)
        assert seen and not any(seen) and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved
