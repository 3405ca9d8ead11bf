"""Re-initialisation donors: `init` (the run's own initial weights) and `random:SEED`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toydata import write_toy

from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches, evaluate_seg
from reuse_console.engine.models.registry import build_model, default_config, load_model
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError

TINY = {"base_width": 4}


@pytest.fixture
def trained(lab):
    write_toy(lab)
    train(
        lab, TrainSpec(data="toy", arch_config=TINY, epochs=1, batch=4, seed=5, augment=False, name="r"), device="cpu"
    )
    return lab


def test_training_keeps_the_seeded_initial_weights(trained) -> None:
    init, meta = read_checkpoint(trained.path("checkpoints", "r.init"))
    torch.manual_seed(5)  # what train does before building the model
    fresh = build_model("unet", default_config("unet", 1, 4, **TINY)).state_dict()
    assert set(init) == set(fresh)
    for key, value in fresh.items():
        assert torch.equal(init[key], value), key
    assert meta.epoch == 0 and meta.seed == 5 and meta.extra["initial"] is True
    trained_state, _ = read_checkpoint(trained.path("checkpoints", "r"))
    assert not torch.equal(trained_state["enc1.conv1.weight"], init["enc1.conv1.weight"])


def _plain_dice(lab, state: dict[str, torch.Tensor]) -> np.ndarray:
    model, meta = load_model(lab, "r")
    model.load_state_dict(state)
    samples = checkpoint_samples(load_slices(lab, "toy"), model, meta.extra)
    batches, subjects = eval_batches(samples, "val")
    return evaluate_seg(model, batches, subjects, samples.classes, samples.present, torch.device("cpu")).per_subject


def test_scan_with_donor_init_equals_a_hand_built_checkpoint(trained) -> None:
    lab = trained
    result = run_scan(lab, "r", "init", "toy", layers="1,3,head", kinds="RM,W", device="cpu")
    recipient, _ = read_checkpoint(lab.path("checkpoints", "r"))
    init, _ = read_checkpoint(lab.path("checkpoints", "r.init"))
    assert result.donor == "init" and len(result.variants) == 5  # head has no RM
    for variant, dice in zip(result.variants, result.dice):
        (key,) = variant.keys
        np.testing.assert_array_equal(dice, _plain_dice(lab, {**recipient, key: init[key]}), err_msg=variant.id)
    # BN statistics at init: running mean 0, variance 1
    rm = next(v for v in result.variants if v.kind == "RM").keys[0]
    assert torch.equal(init[rm], torch.zeros_like(init[rm]))


def test_scan_with_a_random_donor_draws_the_architecture_afresh(trained) -> None:
    lab = trained
    result = run_scan(lab, "r", "random:7", "toy", layers="2", kinds="W,RV", device="cpu")
    torch.manual_seed(7)
    fresh = build_model("unet", default_config("unet", 1, 4, **TINY)).state_dict()
    recipient, _ = read_checkpoint(lab.path("checkpoints", "r"))
    for variant, dice in zip(result.variants, result.dice):
        (key,) = variant.keys
        np.testing.assert_array_equal(dice, _plain_dice(lab, {**recipient, key: fresh[key]}), err_msg=variant.id)


def test_bad_re_initialisation_donors_are_one_line(trained) -> None:
    lab = trained
    with pytest.raises(UserError, match=r"random:SEED with a whole number"):
        run_scan(lab, "r", "random:x", "toy", device="cpu")
    lab.path("checkpoints", "r.init").unlink()
    with pytest.raises(UserError, match=r"has no initial weights .*random:SEED"):
        run_scan(lab, "r", "init", "toy", device="cpu")
