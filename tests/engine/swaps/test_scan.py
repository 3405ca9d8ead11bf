"""Scans: the fast engine gives the naive loop's Dice (deepcopy + load_state_dict + full forward)
and logits, for UNet and PSPNet and every kind; bf16 swaps are seen; a killed scan resumes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from mini_nets import (
    MiniUNet,
    Untraceable,
    labelled_batches,
    naive_dice,
    naive_output,
    pair,
    unet_or_pspnet_pair,
)

from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.swap import Swap
from reuse_console.engine.swaps.variants import Variant, plan_variants

CPU = torch.device("cpu")
CLASSES = ["background", "a", "b", "c"]


def _models(arch: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    return unet_or_pspnet_pair(arch)


def _pick(index: LayerIndex, arch: str) -> list[Variant]:
    """A few variants of every kind: first, middle and last numbered layers, an unnumbered conv."""
    names = ["1", "9", "18", "up2", "head"] if arch == "unet" else ["1", "8", "25", "head"]
    layers = [index.get(n) for n in names]
    variants = plan_variants(layers, ("RM", "RV", "RW", "RB", "W", "B"), (1.0,))
    variants += plan_variants([index.get(names[1])], ("RV", "W"), (0.5,))
    return variants


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
def test_scan_dice_equals_naive_loop(arch: str) -> None:
    recipient, donor = _models(arch)
    batches = labelled_batches(recipient, classes=4)
    variants = _pick(LayerIndex.from_model(recipient, 1), arch)
    assert {v.kind for v in variants} == {"RM", "RV", "RW", "RB", "W", "B"}
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=4) for v in variants])
    base, dice, engine = evaluate_variants(
        recipient,
        donor.state_dict(),
        variants,
        batches,
        classes=CLASSES,
        present=[True] * 4,
        num_subjects=2,
        device=CPU,
        chunk_variants=7,
    )
    assert engine == "partial"
    np.testing.assert_allclose(dice, want, rtol=0, atol=1e-9)
    assert np.abs(dice - base).max() > 0.01  # the variants really change predictions


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
def test_partial_logits_match_naive_within_1e_4(arch: str) -> None:
    recipient, donor = _models(arch)
    donor_state = donor.state_dict()
    variants = _pick(LayerIndex.from_model(recipient, 1), arch)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    want = {v.id: naive_output(recipient, donor_state, list(v.keys), v.alpha, x) for v in variants}
    model = copy.deepcopy(recipient).to(memory_format=torch.channels_last)  # as the scan runs it
    groups: dict[str, list[str]] = {}
    for v in variants:
        groups.setdefault(v.group, []).extend(v.keys)
    engine = PartialForward(model, groups)
    worst: dict[str, float] = {}

    def visit(group: str, downstream) -> None:
        for v in variants:
            if v.group == group:
                with Swap(model, donor_state, v.keys, v.alpha):
                    got = downstream.run()
                worst[v.id] = float((got - want[v.id]).abs().max())

    with torch.inference_mode():
        engine.run(x.contiguous(memory_format=torch.channels_last), visit)
    assert len(worst) == len(variants)
    assert max(worst.values()) < 1e-4, worst


def _mini_variants(model: torch.nn.Module) -> list[Variant]:
    keys = [k for k, t in model.state_dict().items() if t.is_floating_point()]
    return [
        Variant(k.rpartition(".")[0], k.rpartition(".")[2], a, (k,), None, (k.rpartition(".")[0],))
        for k in keys
        for a in (1.0, 0.25)
    ]


def test_untraceable_model_falls_back_with_the_same_results() -> None:
    recipient, donor = pair(Untraceable, out_channels=4)
    batches = labelled_batches(recipient, classes=4, size=16)
    variants = _mini_variants(recipient)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=4) for v in variants])
    base, dice, engine = evaluate_variants(
        recipient,
        donor.state_dict(),
        variants,
        batches,
        classes=CLASSES,
        present=[True] * 4,
        num_subjects=2,
        device=CPU,
    )
    assert engine.startswith("full:")
    np.testing.assert_allclose(dice, want, rtol=0, atol=1e-9)


def test_resumed_evaluation_only_does_the_rest_and_reports_progress() -> None:
    recipient, donor = pair(MiniUNet, out_channels=4)
    batches = labelled_batches(recipient, classes=4, size=16)
    variants = _mini_variants(recipient)
    kwargs = dict(classes=CLASSES, present=[True, True, False, True], num_subjects=2, device=CPU)
    events, snapshots = [], []
    base, full, _ = evaluate_variants(
        recipient,
        donor.state_dict(),
        variants,
        batches,
        report=events.append,
        chunk_variants=4,
        on_chunk=lambda b, d: snapshots.append(dict(d)),
        **kwargs,
    )
    done = [e for e in events if type(e).__name__ == "VariantDone"]
    assert [e.index for e in done] == list(range(1, len(variants) + 1))
    assert "b" not in done[0].dice and set(done[0].dice) == {"background", "a", "c"}
    assert len(snapshots) > 2
    first = snapshots[0]
    events2: list = []
    base2, resumed, _ = evaluate_variants(
        recipient, donor.state_dict(), variants, batches, baseline=base, done=first, report=events2.append, **kwargs
    )
    done2 = [e for e in events2 if type(e).__name__ == "VariantDone"]
    assert len(done2) == len(variants) - len(first)
    assert done2[0].index == len(first) + 1
    np.testing.assert_array_equal(resumed, full)
    np.testing.assert_array_equal(base2, base)


def test_bf16_scan_sees_in_place_weight_swaps() -> None:
    """Autocast may cache low-precision weights; a bf16 scan must still see every swap."""
    recipient, donor = pair(MiniUNet, out_channels=4)
    batches = labelled_batches(recipient, classes=4, size=16)
    variants = [v for v in _mini_variants(recipient) if v.kind == "weight" and v.alpha == 1.0]
    kwargs = dict(classes=CLASSES, present=[True] * 4, num_subjects=2, device=CPU)
    base32, dice32, _ = evaluate_variants(recipient, donor.state_dict(), variants, batches, **kwargs)
    base16, dice16, _ = evaluate_variants(recipient, donor.state_dict(), variants, batches, precision="bf16", **kwargs)
    change32 = np.abs(dice32.mean(axis=1) - base32.mean(axis=0)).max(axis=1)
    change16 = np.abs(dice16.mean(axis=1) - base16.mean(axis=0)).max(axis=1)
    assert (change32 > 0.05).sum() >= 3
    assert np.all(change16[change32 > 0.05] > 0.02)
    assert np.abs(dice16.mean(axis=1) - dice32.mean(axis=1)).max() < 0.02
    assert all(p.requires_grad for p in recipient.parameters())


# -- scans in the lab ------------------------------------------------------------------------------


class Killed(Exception):
    pass


def test_scan_in_the_lab_is_stored_and_matches_evaluate_seg(lab) -> None:
    from swap_lab import CLASSES as LAB_CLASSES
    from swap_lab import make_lab

    from reuse_console.engine.data.slices import load_slices
    from reuse_console.engine.evaluation.evaluate import eval_batches, evaluate_seg
    from reuse_console.engine.models.registry import load_model
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.scan_store import load_scan

    make_lab(lab)
    result = run_scan(lab, "seg", "ae", "toy", layers="1,18,head", kinds="RM,RV,W,B", alphas=(1.0, 0.5), device="cpu")
    assert result.name == "seg-vs-ae" and result.engine == "partial"
    assert [(v.layer, v.kind, v.alpha) for v in result.variants][:3] == [
        ("1", "RM", 1.0),
        ("1", "RM", 0.5),
        ("1", "RV", 1.0),
    ]
    assert len(result.variants) == 2 * (4 + 4 + 2)
    back = load_scan(lab, "seg-vs-ae")
    np.testing.assert_array_equal(back.dice, result.dice)
    assert back.variants == result.variants and back.subjects == ["patient002", "patient003"]
    entry = lab.entries("scans")[0]
    assert entry.summary["variants"] == 20 and entry.summary["recipient"] == "seg"

    model, _ = load_model(lab, "seg")
    batches, subjects = eval_batches(load_slices(lab, "toy"), "val")
    base = evaluate_seg(model, batches, subjects, LAB_CLASSES, [True] * 4, CPU)
    np.testing.assert_allclose(back.baseline, base.per_subject, atol=1e-9)
    variant = back.variants[5]  # layer 1 W at alpha 0.5
    donor, _ = load_model(lab, "ae")
    swapped = copy.deepcopy(model)
    state = swapped.state_dict()
    state[variant.keys[0]] = 0.5 * state[variant.keys[0]] + 0.5 * donor.state_dict()[variant.keys[0]]
    swapped.load_state_dict(state)
    naive = evaluate_seg(swapped, batches, subjects, LAB_CLASSES, [True] * 4, CPU)
    np.testing.assert_allclose(back.dice[5], naive.per_subject, atol=1e-6)

    out = back.to_json()
    assert set(out["baseline"]["dice"]) == set(LAB_CLASSES)
    assert (
        out["variants"][0]["layer"] == 1 and out["variants"][0]["kind"] == "RM" and out["variants"][0]["alpha"] == 1.0
    )
    assert out["variants"][-1]["layer"] == "head"
    assert set(out["variants"][0]["dice"]) == set(LAB_CLASSES)


def test_killed_scan_resumes_keeping_finished_variants(lab) -> None:
    from swap_lab import make_lab

    from reuse_console.engine.core.events import VariantDone
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.scan_store import progress_path, read_scan
    from reuse_console.store.errors import UserError

    make_lab(lab)
    opts = dict(layers="1-6", kinds="RM,W", device="cpu", chunk_variants=4)
    full = run_scan(lab, "seg", "ae", "toy", name="full", **opts)

    def kill_in_second_chunk(event) -> None:
        if isinstance(event, VariantDone) and event.index == 6:
            raise Killed

    with pytest.raises(Killed):
        run_scan(lab, "seg", "ae", "toy", report=kill_in_second_chunk, **opts)
    progress = progress_path(lab, "seg-vs-ae")
    assert progress.exists() and not lab.exists("scans", "seg-vs-ae")
    assert [e.id for e in lab.entries("scans")] == ["full"]  # listing ignores the progress file
    kept = int((~np.isnan(read_scan(progress).dice).any(axis=(1, 2))).sum())
    assert 4 <= kept < 12
    with pytest.raises(UserError, match="--resume"):
        run_scan(lab, "seg", "ae", "toy", name="seg-vs-ae", **opts)
    with pytest.raises(UserError, match="started with kinds"):
        run_scan(lab, "seg", "ae", "toy", resume=True, **{**opts, "kinds": "RM"})
    events: list = []
    resumed = run_scan(lab, "seg", "ae", "toy", resume=True, report=events.append, **opts)
    done = [e for e in events if isinstance(e, VariantDone)]
    assert len(done) == 12 - kept and done[0].index == kept + 1
    np.testing.assert_array_equal(resumed.dice, full.dice)
    np.testing.assert_array_equal(resumed.baseline, full.baseline)
    assert not progress.exists() and lab.exists("scans", "seg-vs-ae")
    with pytest.raises(UserError, match="nothing to resume"):
        run_scan(lab, "seg", "ae", "toy", resume=True, **opts)
