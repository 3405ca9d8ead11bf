"""BN recalibration (AdaBN): statistics by hand, the scan engine against a naive recalibrated loop,
and the checks a reader would ask for (RM/RV variants equal the recalibrated baseline)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mini_nets import labelled_batches, unet_or_pspnet_pair

from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.norm_stats import recalibrate, tracked_norms
from reuse_console.engine.swaps.recalibration import Calibration
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.variants import plan_variants
from reuse_console.store.errors import UserError

CPU = torch.device("cpu")
CLASSES = ["background", "a", "b", "c"]


def _models(arch: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    return unet_or_pspnet_pair(arch)


def _calibration_batches(n: int = 3, size: int = 64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return [torch.randn(4, 1, size, size, generator=g) * 1.5 + 0.2 for _ in range(n)]


def test_recalibrated_statistics_of_the_first_norm_by_hand() -> None:
    """RM/RV of layer 1's BN are the average over batches of each batch's channel mean and unbiased
    variance of the first conv's output (PyTorch's cumulative average), computed here in numpy."""
    model, _ = _models("unet")
    layer = LayerIndex.from_model(model, 1, size=64).layers[0]
    conv = dict(model.named_modules())[str(layer.conv)]
    batches = _calibration_batches()
    means, variances = [], []
    for x in batches:
        with torch.no_grad():
            y = conv(x).double().numpy()
        means.append(y.mean(axis=(0, 2, 3)))
        variances.append(y.var(axis=(0, 2, 3), ddof=1))
    recalibrate(model, batches)
    bn = tracked_norms(model)[str(layer.bn)]
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean(means, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean(variances, axis=0), rtol=1e-5)
    assert not bn.training and bn.momentum == 0.1  # given back


def test_corrupted_statistics_are_restored_with_the_dice() -> None:
    model, _ = _models("unet")
    batches = _calibration_batches()
    recalibrate(model, batches)
    good = {k: v.clone() for k, v in model.state_dict().items()}
    data = labelled_batches(model, classes=4)
    want = _dice(model, data)
    with torch.no_grad():
        for bn in tracked_norms(model).values():
            bn.running_mean.add_(3.0)
            bn.running_var.mul_(7.0)
    assert not np.allclose(_dice(model, data), want)
    recalibrate(model, batches)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, good[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_dice(model, data), want)


def _dice(model: torch.nn.Module, batches) -> np.ndarray:
    acc = DiceAccumulator(4, 2)
    with torch.no_grad():
        for b in batches:
            acc.update(model.eval()(b.images).argmax(1), b.labels, b.subject)
    return acc.per_subject()


def _naive_recalibrated(recipient, donor_state, variant, batches, calibration, scope: str) -> np.ndarray:
    """The obvious way: copy, swap, re-estimate (every norm, or those after the swapped module in
    forward order), evaluate."""
    ref = copy.deepcopy(recipient)
    state = ref.state_dict()
    for key in variant.keys:
        state[key] = torch.lerp(state[key], donor_state[key], variant.alpha)
    ref.load_state_dict(state)
    names = None
    if scope == "downstream":
        order: list[str] = []
        hooks = [m.register_forward_pre_hook(lambda *_, p=p: order.append(p)) for p, m in ref.named_modules() if p]
        with torch.no_grad():
            ref.eval()(calibration[0])
        for h in hooks:
            h.remove()
        start = order.index(variant.modules[0])
        names = [p for p in dict.fromkeys(order[start:]) if p in tracked_norms(ref)]
    recalibrate(ref, calibration, names=names)
    return _dice(ref, batches)


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
@pytest.mark.parametrize("partial", [True, False])
def test_recalibrated_scan_equals_the_naive_recalibrated_loop(arch: str, partial: bool) -> None:
    recipient, donor = _models(arch)
    batches = labelled_batches(recipient, classes=4)
    calibration = _calibration_batches()
    layers = LayerIndex.from_model(recipient, 1, size=64).layers
    variants = plan_variants(layers[:3] + layers[-3:], ("RM", "RV", "RW", "W"), (1.0,))
    before = {k: v.clone() for k, v in recipient.state_dict().items()}
    base, dice, engine = evaluate_variants(
        recipient, donor.state_dict(), variants, batches, classes=CLASSES, present=[True] * 4,
        num_subjects=2, device=CPU, partial=partial, calibration=Calibration(calibration, "all"),
    )  # fmt: skip
    assert engine == ("partial" if partial else "full: partial re-execution switched off")
    for key, value in recipient.state_dict().items():  # the recipient's own statistics are back
        assert torch.equal(value, before[key]), key
    recalibrated = copy.deepcopy(recipient)
    recalibrate(recalibrated, calibration)
    np.testing.assert_allclose(base, _dice(recalibrated, batches), atol=1e-9)
    for v, got in zip(variants, dice):
        want = _naive_recalibrated(recipient, donor.state_dict(), v, batches, calibration, "all")
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=v.id)
        if v.kind in ("RM", "RV"):  # the donor's statistics are overwritten: the recalibrated baseline
            np.testing.assert_allclose(got, base, atol=1e-6, err_msg=v.id)


def test_downstream_scope_keeps_upstream_statistics() -> None:
    recipient, donor = _models("unet")
    batches = labelled_batches(recipient, classes=4)
    calibration = _calibration_batches()
    layers = LayerIndex.from_model(recipient, 1, size=64).layers
    variants = plan_variants(layers[4:6], ("RW", "W"), (1.0, 0.5))
    for partial in (True, False):
        base, dice, _ = evaluate_variants(
            recipient, donor.state_dict(), variants, batches, classes=CLASSES, present=[True] * 4,
            num_subjects=2, device=CPU, partial=partial, calibration=Calibration(calibration, "downstream"),
        )  # fmt: skip
        np.testing.assert_allclose(base, _dice(recipient, batches))  # nothing swapped: nothing re-estimated
        for v, got in zip(variants, dice):  # UNet is a chain: the graph's downstream is forward order
            want = _naive_recalibrated(recipient, donor.state_dict(), v, batches, calibration, "downstream")
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f"{v.id} partial={partial}")


def test_alpha_zero_is_the_recalibrated_recipient() -> None:
    recipient, donor = _models("unet")
    batches = labelled_batches(recipient, classes=4)
    layers = LayerIndex.from_model(recipient, 1, size=64).layers
    variants = plan_variants(layers[:2], ("W", "RW"), (0.0,))
    base, dice, _ = evaluate_variants(
        recipient, donor.state_dict(), variants, batches, classes=CLASSES, present=[True] * 4,
        num_subjects=2, device=CPU, calibration=Calibration(_calibration_batches(), "all"),
    )  # fmt: skip
    for got in dice:
        np.testing.assert_allclose(got, base, atol=1e-9)


def test_bad_calibration_settings_are_one_line() -> None:
    with pytest.raises(UserError, match="unknown --recalibrate-scope 'up'"):
        Calibration(_calibration_batches(), "up")
    with pytest.raises(UserError, match="at least one training batch"):
        Calibration([], "all")


class Killed(Exception):
    pass


def test_recalibrated_scan_is_stored_beside_the_raw_one_and_resumes(lab) -> None:
    """The scan file holds raw and recalibrated Dice; a scan killed in its recalibrated pass
    resumes with both, equal to an uninterrupted one; a swap recalibrates the same way."""
    from swap_lab import make_lab

    from reuse_console.engine.core.events import Message, VariantDone
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.scan_store import progress_path, read_scan
    from reuse_console.engine.swaps.swap_lab import run_swap

    make_lab(lab)
    opts = dict(layers="1-4", kinds="RM,RW,W", device="cpu", chunk_variants=4, recalibrate=2)
    full = run_scan(lab, "seg", "ae", "toy", name="full", **opts)
    stored = read_scan(lab.path("scans", "full"))
    assert stored.options["recalibrate"] == 2 and stored.options["recalibrate_scope"] == "all"
    np.testing.assert_array_equal(stored.recalibrated, full.recalibrated)
    assert not np.isnan(stored.recalibrated).any() and stored.recalibrated.shape == stored.dice.shape
    rm = [i for i, v in enumerate(full.variants) if v.kind == "RM"]
    for i in rm:  # every RM variant: the recalibrated baseline
        np.testing.assert_allclose(full.recalibrated[i], full.recalibrated_baseline, atol=1e-6)
    json = full.to_json()
    assert set(json["variants"][0]["dice_recalibrated"]) == {"background", "RV", "MYO", "LV"}

    recal_pass = []

    def kill_in_the_recalibrated_pass(event) -> None:
        if isinstance(event, Message) and event.text.startswith("recalibrated pass"):
            recal_pass.append(True)
        if recal_pass and isinstance(event, VariantDone) and event.index == 6:
            raise Killed

    with pytest.raises(Killed):
        run_scan(lab, "seg", "ae", "toy", report=kill_in_the_recalibrated_pass, **opts)
    partial = read_scan(progress_path(lab, "seg-vs-ae"))
    assert not np.isnan(partial.dice).any()  # the raw pass was finished and kept
    kept = int((~np.isnan(partial.recalibrated).any(axis=(1, 2))).sum())
    assert 4 <= kept < len(full.variants)
    events: list = []
    resumed = run_scan(lab, "seg", "ae", "toy", resume=True, report=events.append, **opts)
    assert len([e for e in events if isinstance(e, VariantDone)]) == len(full.variants) - kept
    np.testing.assert_array_equal(resumed.dice, full.dice)
    np.testing.assert_array_equal(resumed.recalibrated, full.recalibrated)
    np.testing.assert_array_equal(resumed.recalibrated_baseline, full.recalibrated_baseline)

    swap = run_swap(lab, "seg", "ae", "toy", layers="1", kinds="RM", device="cpu", recalibrate=2)
    np.testing.assert_allclose(swap.recalibrated[0], full.recalibrated_baseline, atol=1e-6)
    with pytest.raises(UserError, match="--recalibrate must be"):
        run_swap(lab, "seg", "ae", "toy", layers="1", kinds="RM", device="cpu", recalibrate=-1)
