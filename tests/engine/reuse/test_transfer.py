"""Transfer training: the plan's tensors come from the donor; freeze keeps them bit-identical."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toydata import write_toy

from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe
from reuse_console.engine.reuse.transfer import freeze, transfer_init
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError

TINY = {"base_width": 4}
# reused in the plan below: layer 1 whole (BN RM+RV both frozen), layer 2 RM only (a BN with one
# frozen running statistic), layer 5 W and RW, and the head's W
REUSED = {("1", k) for k in ("RM", "RV", "RW", "RB", "W", "B")} | {("2", "RM"), ("5", "W"), ("5", "RW"), ("head", "W")}


def _spec(**kw) -> TrainSpec:
    base = {"data": "toy", "arch_config": TINY, "epochs": 2, "batch": 4, "seed": 3, "augment": False}
    return TrainSpec(**{**base, **kw})


def _index() -> LayerIndex:
    return LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, **TINY)), 1, 64)


def _plan(name: str = "p") -> ReusePlan:
    plan = ReusePlan(name=name, arch="unet", tensors=universe(_index()))
    return plan.with_reusable(REUSED)


@pytest.fixture
def donor_lab(lab):
    """A lab with the toy data, a trained donor checkpoint and the plan above."""
    write_toy(lab)
    train(lab, _spec(name="donor", epochs=1, seed=11), device="cpu")
    save_plan(lab, _plan())
    return lab


def _layer_keys() -> list[str]:
    return [layer.key(kind) for layer in _index() for kind in layer.kinds]


def _fresh_init(seed: int) -> dict[str, torch.Tensor]:
    """The seeded initialisation training starts from (train seeds torch, then builds the model)."""
    torch.manual_seed(seed)
    return build_model("unet", default_config("unet", 1, 4, **TINY)).state_dict()


def test_freeze_keeps_every_frozen_tensor_bit_identical_and_moves_the_rest(donor_lab) -> None:
    lab = donor_lab
    donor, _ = read_checkpoint(lab.path("checkpoints", "donor"))
    result = train(lab, _spec(name="fz", init="donor", plan="p", mode="freeze", lr=1e-2), device="cpu")
    after, meta = read_checkpoint(result.last_path)
    assert meta.epoch == 2
    frozen = set(_plan().keys())
    assert len(frozen) == len(REUSED)
    assert sorted(meta.extra["spec"]["frozen"]) == sorted(frozen)
    for key in frozen:
        assert torch.equal(after[key], donor[key]), key  # bit-identical: params and running stats
    init = _fresh_init(3)
    moved = [k for k in _layer_keys() if k not in frozen]
    assert len(moved) == len(_layer_keys()) - len(frozen)
    for key in moved:
        assert not torch.equal(after[key], init[key]), f"{key} did not train"
        assert not torch.equal(after[key], donor[key]), f"{key} equals the donor's"
    # layer 2: RM frozen, its RV (same BN) still tracks batch statistics
    index = _index()
    assert torch.equal(after[index.get(2).key("RM")], donor[index.get(2).key("RM")])
    assert not torch.equal(after[index.get(2).key("RV")], init[index.get(2).key("RV")])


def test_finetune_starts_from_the_donor_and_trains_the_loaded_tensors(donor_lab) -> None:
    lab = donor_lab
    donor, _ = read_checkpoint(lab.path("checkpoints", "donor"))
    spec, state = transfer_init(lab, _spec(name="ft", init="donor", plan="p", mode="finetune"))
    assert spec.frozen == [] and spec.mode == "finetune"
    assert set(state) == set(_plan().keys())
    assert all(torch.equal(state[k], donor[k]) for k in state)

    result = train(lab, _spec(name="ft", init="donor", plan="p", mode="finetune", lr=1e-2), device="cpu")
    after, meta = read_checkpoint(result.last_path)
    assert meta.extra["spec"]["frozen"] == [] and meta.extra["spec"]["init"] == "donor"
    for key in state:
        assert not torch.equal(after[key], donor[key]), f"{key} was not fine-tuned"
    # it started from the donor, not from the seeded random init: a random run with the same seed ends elsewhere
    scratch = train(lab, _spec(name="rnd", lr=1e-2), device="cpu")
    rnd, _ = read_checkpoint(scratch.last_path)
    untouched = [k for k in _layer_keys() if k not in state]
    assert any(not torch.equal(after[k], rnd[k]) for k in untouched)


def test_transfer_refuses_bad_inputs(donor_lab) -> None:
    lab = donor_lab
    with pytest.raises(UserError, match="needs --plan"):
        train(lab, _spec(name="x", init="donor"), device="cpu")
    with pytest.raises(UserError, match="--mode"):
        train(lab, _spec(name="x", init="donor", plan="p", mode="thaw"), device="cpu")
    with pytest.raises(UserError, match="needs --init"):
        train(lab, _spec(name="x", plan="p"), device="cpu")
    with pytest.raises(UserError, match="no plan"):
        train(lab, _spec(name="x", init="donor", plan="nope", mode="freeze"), device="cpu")
    wide = _spec(name="x", init="donor", plan="p", mode="freeze", arch_config={"base_width": 8})
    with pytest.raises(UserError, match="shape"):
        train(lab, wide, device="cpu")
    assert not lab.path("runs", "x").exists()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


def test_freeze_means_no_gradient_and_no_update_even_with_weight_decay() -> None:
    torch.manual_seed(0)
    net = _Net()
    keys = ["conv1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn2.running_var"]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    handle = freeze(net, keys)
    assert sorted(handle.params) == ["bn1.bias", "conv1.weight"]
    assert sorted(handle.stats) == ["bn1.running_mean", "bn1.running_var", "bn2.running_var"]
    opt = torch.optim.AdamW(net.parameters(), lr=0.1, weight_decay=0.5)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 1, 8, 8) * 3 + 1).square().mean().backward()
        assert net.conv1.weight.grad is None and net.bn1.bias.grad is None
        opt.step()
    state = net.state_dict()
    for key in keys:
        assert torch.equal(state[key], before[key]), key
    for key in ("conv1.bias", "bn1.weight", "conv2.weight", "bn2.weight", "bn2.running_mean"):
        assert not torch.equal(state[key], before[key]), key
    handle.remove()
    net(torch.randn(4, 1, 8, 8) + 5)
    assert not torch.equal(net.bn1.running_mean, before["bn1.running_mean"])  # unfrozen again


def test_freeze_refuses_a_tensor_that_is_no_parameter_or_running_statistic() -> None:
    with pytest.raises(UserError, match="cannot freeze"):
        freeze(_Net(), ["bn1.num_batches_tracked"])


def test_a_failed_forward_does_not_lose_the_frozen_statistics() -> None:
    net = _Net()
    frozen_rm = net.bn1.running_mean
    before = frozen_rm.clone()
    freeze(net, ["bn1.running_mean"])
    net.train()
    with pytest.raises(RuntimeError):
        net.bn1(torch.randn(4, 5, 8, 8))  # 5 channels into a 3-channel BN: raises inside the forward
    net.bn1(torch.randn(4, 3, 8, 8) + 3)
    assert net.bn1.running_mean is frozen_rm and torch.equal(frozen_rm, before)


def test_recalibrated_freeze_keeps_statistics_computed_by_hand(donor_lab) -> None:
    """--recalibrate 2 with mode freeze: layer 1's frozen RM/RV are the average over the first two
    batches of the run's training slices of the donor conv's channel mean and unbiased variance
    (numpy, by hand), and stay so through training; the donor's statistics are not kept."""
    import numpy as np

    from reuse_console.engine.data.batches import pick_subjects
    from reuse_console.engine.data.slices import load_slices

    lab = donor_lab
    donor, _ = read_checkpoint(lab.path("checkpoints", "donor"))
    spec = _spec(name="rc", init="donor", plan="p", mode="freeze", recalibrate=2, batch=4)
    result = train(lab, spec, device="cpu")
    after, _ = read_checkpoint(result.last_path)
    layer = _index().get(1)
    conv = nn.Conv2d(1, donor[layer.key("W")].shape[0], 3, padding=1)
    conv.load_state_dict({"weight": donor[layer.key("W")], "bias": donor[layer.key("B")]})
    slices = load_slices(lab, "toy")
    index = slices.slice_indices("train", pick_subjects(slices, None, 3))
    means, variances = [], []
    for start in (0, 4):
        with torch.no_grad():
            y = conv(torch.from_numpy(slices.images[index[start : start + 4]]).unsqueeze(1)).double().numpy()
        means.append(y.mean(axis=(0, 2, 3)))
        variances.append(y.var(axis=(0, 2, 3), ddof=1))
    np.testing.assert_allclose(after[layer.key("RM")].numpy(), np.mean(means, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(after[layer.key("RV")].numpy(), np.mean(variances, axis=0), rtol=1e-5)
    assert not torch.equal(after[layer.key("RM")], donor[layer.key("RM")])
    assert torch.equal(after[layer.key("W")], donor[layer.key("W")])  # weights are never recalibrated


def test_recalibrate_needs_a_donor(lab) -> None:
    write_toy(lab)
    with pytest.raises(UserError, match="goes with --init"):
        train(lab, _spec(recalibrate=2), device="cpu")
