"""Partial re-execution: every downstream re-run equals the naive full forward of a swapped copy,
cached activations are never changed, and a model that does not trace falls back correctly."""

from __future__ import annotations

import pytest
import torch
from mini_nets import DirectParam, MiniResNet, MiniUNet, Untraceable, naive_output, pair

from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.swap import Swap, model_tensors

TRACEABLE = [MiniUNet, MiniResNet, DirectParam]


def _groups(model: torch.nn.Module) -> dict[str, list[str]]:
    """One group per module owning tensors, as a scan makes them (BN layer, conv)."""
    groups: dict[str, list[str]] = {}
    for key, t in model.state_dict().items():
        if t.is_floating_point():
            groups.setdefault(key.rpartition(".")[0] or key, []).append(key)
    return groups


@pytest.mark.parametrize("cls", [*TRACEABLE, Untraceable])
def test_every_single_tensor_swap_matches_naive_full_forward(cls: type) -> None:
    recipient, donor = pair(cls)
    donor_state = donor.state_dict()
    groups = _groups(recipient)
    engine = PartialForward(recipient, groups)
    assert engine.partial == (cls is not Untraceable)
    x = torch.randn(3, 1, 16, 16)
    seen: list[str] = []
    worst = 0.0

    def visit(name: str, downstream) -> None:
        nonlocal worst
        seen.append(name)
        for key in groups[name]:
            for alpha in (1.0, 0.5):
                with Swap(recipient, donor_state, [key], alpha):
                    got = downstream.run()
                want = naive_output(recipient, donor_state, [key], alpha, x)
                assert not torch.equal(want, naive_output(recipient, donor_state, [], 1.0, x)) or "bias" in key
                worst = max(worst, float((got - want).abs().max()))

    with torch.inference_mode():
        baseline = engine.run(x, visit)
        assert torch.equal(baseline, recipient(x))
    assert sorted(seen) == sorted(groups)
    assert worst < 1e-5


def test_untraceable_model_says_why() -> None:
    recipient, _ = pair(Untraceable)
    engine = PartialForward(recipient, _groups(recipient))
    assert not engine.partial
    assert "TraceError" in engine.reason or "bool" in engine.reason


@pytest.mark.parametrize("cls", TRACEABLE)
def test_cached_activations_are_never_changed_by_a_rerun(cls: type) -> None:
    recipient, donor = pair(cls, seed=3)
    donor_state = donor.state_dict()
    groups = _groups(recipient)
    engine = PartialForward(recipient, groups)
    checked = 0

    def visit(name: str, downstream) -> None:
        nonlocal checked
        before = {k: v.clone() for k, v in downstream.frontier().items() if isinstance(v, torch.Tensor)}
        for key in groups[name]:
            with Swap(recipient, donor_state, [key]):
                downstream.run()
        after = downstream.frontier()
        for k, v in before.items():
            assert torch.equal(after[k], v), f"{name}: cached {k} changed"
            checked += 1

    with torch.inference_mode():
        engine.run(torch.randn(2, 1, 16, 16), visit)
    assert checked >= len(groups)


def test_skip_connection_is_part_of_the_decoder_frontier() -> None:
    recipient, _ = pair(MiniUNet)
    engine = PartialForward(recipient, {"dec": ["dec.0.weight"], "enc1": ["enc1.0.weight"]})
    dec_frontier = {n.name for n in engine.groups["dec"].frontier}
    assert len(dec_frontier) == 1  # the concatenation of up(e2) and the skip e1 feeds dec.0
    enc = engine.groups["enc1"]
    assert [n.op for n in enc.frontier] == ["placeholder"]
    # the decoder group starts after the encoder: everything before it is shared by its variants
    assert engine.groups["dec"].ready > enc.ready


def test_multi_layer_group_and_partial_baseline() -> None:
    recipient, donor = pair(MiniResNet, seed=5)
    donor_state = donor.state_dict()
    keys = ["block1.bn2.running_mean", "block2.down.1.running_var", "head.bias"]
    engine = PartialForward(recipient, {"many": keys, "stem": ["stem.1.weight"]})
    x = torch.randn(2, 1, 16, 16)
    got: dict[str, torch.Tensor] = {}

    def visit(name: str, downstream) -> None:
        with Swap(recipient, donor_state, engine.group_keys[name]):
            got[name] = downstream.run()

    with torch.inference_mode():
        assert engine.run(x, visit, ["many"], to_end=False) is None
        assert list(got) == ["many"]
    assert torch.allclose(got["many"], naive_output(recipient, donor_state, keys, 1.0, x), atol=1e-6)


def test_inplace_relu_modules_are_left_as_the_user_built_them() -> None:
    recipient, _ = pair(MiniResNet)
    PartialForward(recipient, _groups(recipient))
    assert recipient.block1.relu.inplace is True
    assert all(t.is_leaf for t in model_tensors(recipient).values())


class OptionalInput(MiniUNet):
    """A second forward argument with a default: traced as a placeholder that keeps it."""

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        return super().forward(x) * gain


class PythonScale(MiniUNet):
    """Multiplies by a Python float: tracing bakes the value in at trace time."""

    scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


def test_optional_inputs_keep_their_defaults() -> None:
    recipient, donor = pair(OptionalInput)
    engine = PartialForward(recipient, {"dec": ["dec.1.running_mean"]})
    assert engine.partial
    x = torch.randn(2, 1, 16, 16)
    got = {}

    def visit(name: str, downstream) -> None:
        with Swap(recipient, donor.state_dict(), ["dec.1.running_mean"]):
            got[name] = downstream.run()

    with torch.inference_mode():
        engine.run(x, visit)
    want = naive_output(recipient, donor.state_dict(), ["dec.1.running_mean"], 1.0, x)
    assert torch.allclose(got["dec"], want, atol=1e-6)


def test_verify_falls_back_when_the_trace_went_stale() -> None:
    recipient, _ = pair(PythonScale)
    engine = PartialForward(recipient, _groups(recipient))
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode():
        assert engine.verify(x) and engine.partial
        recipient.scale = 2.0  # the graph still multiplies by 1.0
        assert not engine.verify(x)
    assert not engine.partial and "disagrees" in engine.reason
