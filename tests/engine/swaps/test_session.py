"""The Swap lab's session: each swap's Dice equals a naive swap (fresh model, load_state_dict)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from reuse_console.store.errors import UserError

pytestmark = pytest.mark.slow  # trains two tiny UNets once for the module (~10 s on 2 cores)


@pytest.fixture(scope="module")
def swap_lab(tmp_path_factory: pytest.TempPathFactory):
    """A 3-subject phantom at 64 px and three base-width-4 UNets (seg, ae, and a wider seg)."""
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.engine.data.phantom import make_phantom
    from reuse_console.engine.models.registry import build_model, default_config, save_model
    from reuse_console.engine.training.train import TrainSpec, train
    from reuse_console.store.checkpoints import CheckpointMeta
    from reuse_console.store.lab import Lab

    root = tmp_path_factory.mktemp("session")
    make_phantom(root / "phantom", subjects=3, scale=0.5, cine=False)
    lab = Lab(root / "lab")
    import_dataset(lab, root / "phantom", name="acdc", size=64, val_subjects=1)
    for task in ("seg", "ae"):
        spec = TrainSpec(data="acdc", arch_config={"base_width": 4}, task=task, epochs=1, batch=8, name=f"unet-{task}")
        train(lab, spec, device="cpu")
    config = default_config("unet", 1, 4, base_width=8)
    wide = CheckpointMeta("unet", config, "seg", "acdc", ["background", "RV", "MYO", "LV"])
    save_model(lab, "unet-wide", build_model("unet", config), wide)
    return lab


@pytest.fixture(scope="module")
def session(swap_lab):
    from reuse_console.engine.swaps.session import SwapSession

    return SwapSession(swap_lab, "unet-seg", "unet-ae", device="cpu")


def naive_dice(lab, targets: list[tuple[str, str]], alpha: float) -> np.ndarray:
    """Dice per subject of a freshly loaded recipient whose tensors were mixed by hand."""
    from reuse_console.engine.data.slices import load_slices
    from reuse_console.engine.evaluation.evaluate import eval_batches, evaluate_seg
    from reuse_console.engine.models.layers import LayerIndex
    from reuse_console.engine.models.registry import load_model

    model, _ = load_model(lab, "unet-seg", device="cpu")
    donor, _ = load_model(lab, "unet-ae", device="cpu")
    index = LayerIndex.from_model(model, 1)
    state = copy.deepcopy(model.state_dict())
    donor_state = donor.state_dict()
    for layer, kind in targets:
        key = index.get(layer).key(kind)
        state[key] = (1 - alpha) * state[key] + alpha * donor_state[key]
    model.load_state_dict(state)
    slices = load_slices(lab, "acdc")
    batches, subjects = eval_batches(slices, "val")
    result = evaluate_seg(model, batches, subjects, slices.classes, slices.present, torch.device("cpu"))
    return result.per_subject


def test_baseline_matches_plain_evaluation(swap_lab, session) -> None:
    from reuse_console.engine.evaluation.evaluate import evaluate_checkpoint

    plain = evaluate_checkpoint(swap_lab, "unet-seg", device="cpu")
    assert session.baseline.dice == pytest.approx(plain["dice"], abs=1e-12)
    assert all(v == 0.0 for v in session.baseline.delta.values() if v is not None)


def test_swap_equals_naive_swap_and_restores_the_recipient(swap_lab, session) -> None:
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    targets = [("1", "RM"), ("1", "RV"), ("5", "W"), ("head", "B")]
    outcome = session.evaluate(targets)
    np.testing.assert_array_equal(outcome.result.per_subject, naive_dice(swap_lab, targets, 1.0))
    for key, value in session.model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} not restored"
    for cls, value in outcome.dice.items():
        base = session.baseline.dice[cls]
        if value is not None:
            assert outcome.delta[cls] == pytest.approx(value - base)
    assert outcome.targets == (("1", "RM"), ("1", "RV"), ("5", "W"), ("head", "B"))


def test_alpha_interpolates_like_a_hand_mix(swap_lab, session) -> None:
    targets = [("2", "RW"), ("2", "RB"), ("9", "W")]
    outcome = session.evaluate(targets, alpha=0.5)
    np.testing.assert_allclose(outcome.result.per_subject, naive_dice(swap_lab, targets, 0.5), atol=1e-6)
    assert outcome.describe() == "2 RW,RB; 9 W (alpha 0.5)"


def test_history_numbers_each_try(session) -> None:
    n = len(session.history)
    first = session.evaluate([("3", "RM")])
    second = session.evaluate([("3", "RM")])
    assert (first.number, second.number) == (n + 1, n + 2)
    assert first.dice == second.dice  # the same swap twice gives the same Dice: nothing leaked


def test_bad_requests_are_user_errors(swap_lab, session) -> None:
    from reuse_console.engine.swaps.session import SwapSession

    with pytest.raises(UserError, match="nothing to swap"):
        session.evaluate([])
    with pytest.raises(UserError, match="has no RM"):
        session.evaluate([("head", "RM")])
    with pytest.raises(UserError, match="alpha"):
        session.evaluate([("1", "RM")], alpha=2.0)
    with pytest.raises(UserError, match="ae model"):
        SwapSession(swap_lab, "unet-ae", "unet-seg", device="cpu")
    with pytest.raises(UserError, match="differs"):
        SwapSession(swap_lab, "unet-seg", "unet-wide", device="cpu")


def test_same_numbers_as_the_swap_command_and_saved_like_it(swap_lab, session) -> None:
    from reuse_console.engine.swaps.scan_store import load_scan
    from reuse_console.engine.swaps.swap_lab import run_swap

    outcome = session.evaluate([("1", "RM"), ("1", "RV")])
    command = run_swap(swap_lab, "unet-seg", "unet-ae", "acdc", layers="1", kinds="RM,RV", device="cpu")
    np.testing.assert_allclose(command.dice[0], outcome.result.per_subject, atol=1e-12)
    np.testing.assert_allclose(command.baseline, session.baseline.result.per_subject, atol=1e-12)
    name = session.save(outcome, "kept-swap")
    saved = load_scan(swap_lab, name)
    assert (saved.recipient, saved.donor, saved.data) == ("unet-seg", "unet-ae", "acdc")
    assert [(v.layer, v.kind, v.alpha) for v in saved.variants] == [("1", "RM,RV", 1.0)]
    assert saved.variants[0].keys == command.variants[0].keys
    np.testing.assert_array_equal(saved.dice[0], outcome.result.per_subject)
    with pytest.raises(UserError, match="already exists"):
        session.save(outcome, "kept-swap")
    assert session.save(outcome).startswith("swap-unet-seg-vs-unet-ae")
