"""The fast path is never wrong and never crashes a scan: MONAI's BasicUNet (whose UpCat traces
into the wrong graph) takes it and gives the naive loop's Dice; a model whose traced graph
raises, or a traced run that fails mid-scan, falls back to the full forward with the reason kept;
`swap --full-forward` and the Swap lab's full-forward option give the default path's Dice."""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch
from mini_nets import TracesWrong, labelled_batches, naive_dice, pair, randomise_bn

from reuse_console.engine.core.events import Message
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.swaps.partial import PartialForward
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.scan_inputs import Loaded
from reuse_console.engine.swaps.scan_lab import evaluate_and_store
from reuse_console.engine.swaps.variants import Variant

CPU = torch.device("cpu")
CLASSES = ["background", "a", "b"]


def _variants(model: torch.nn.Module) -> list[Variant]:
    """Every floating-point tensor swapped on its own."""
    keys = [k for k, t in model.state_dict().items() if t.is_floating_point()]
    return [Variant(k.rpartition(".")[0], k.rpartition(".")[2], 1.0, (k,), None, (k.rpartition(".")[0],)) for k in keys]


def _basic_unet(seed: int) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(seed)
    model = BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4), norm="batch")
    return randomise_bn(model, seed)


def test_basic_unet_scan_takes_the_fast_path_and_equals_the_naive_scan() -> None:
    recipient, donor = _basic_unet(1), _basic_unet(2)
    batches = labelled_batches(recipient, classes=3, size=32)
    variants = _variants(recipient)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    events: list = []
    base, dice, engine = evaluate_variants(
        recipient,
        donor.state_dict(),
        variants,
        batches,
        classes=CLASSES,
        present=[True] * 3,
        num_subjects=2,
        device=CPU,
        chunk_variants=16,
        report=events.append,
    )
    assert engine == "partial"
    said = " ".join(e.text for e in events if isinstance(e, Message))
    assert "partial re-execution" in said and "upcat_1" in said  # kept whole, the rest re-runs from the cache
    np.testing.assert_allclose(dice, want, rtol=0, atol=1e-6)
    assert np.abs(dice - base).max() > 0.01  # the variants really change predictions


def test_basic_unet_downstream_runs_start_after_the_changed_layer() -> None:
    """A change in the decoder re-runs only the decoder: the encoder's nodes are not in its part."""
    model = _basic_unet(1)
    engine = PartialForward(model, {"up": ["upcat_1.convs.conv_1.adn.N.running_mean"]})
    with torch.inference_mode():
        assert engine.verify(torch.randn(2, 1, 32, 32))
    nodes = [n.name for n in engine.groups["up"].nodes]
    assert nodes[0] == "upcat_1" and not any(n.startswith(("conv_0", "down_")) for n in nodes)


def _loaded(model: torch.nn.Module, donor: torch.nn.Module, batches: list[EvalBatch]) -> Loaded:
    return Loaded(
        model,
        donor.state_dict(),
        LayerIndex.from_model(model, 1),
        batches,
        ["s0", "s1"],
        CLASSES,
        [True] * 3,
        CPU,
        "fp32",
    )


def _provenance(path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["provenance"])


def test_model_whose_traced_graph_raises_falls_back_with_the_reason_in_the_scan_file(lab) -> None:
    recipient, donor = pair(TracesWrong, out_channels=3)
    batches = labelled_batches(recipient, classes=3, size=16)
    variants = _variants(recipient)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    events: list = []
    result = evaluate_and_store(
        lab,
        _loaded(recipient, donor, batches),
        variants,
        name="raises",
        recipient="r",
        donor="d",
        data="toy",
        options={"recipient": "r"},
        report=events.append,
    )
    np.testing.assert_allclose(result.dice, want, rtol=0, atol=1e-6)
    assert result.engine.startswith("full:") and "RuntimeError" in result.engine
    engine = _provenance(lab.path("scans", "raises"))["engine"]
    assert engine == result.engine and "fails on real input" in engine
    assert any(isinstance(e, Message) and "RuntimeError" in e.text for e in events)


def test_traced_run_failing_mid_scan_falls_back_and_redoes_the_chunk(lab, monkeypatch) -> None:
    from mini_nets import MiniUNet

    recipient, donor = pair(MiniUNet, out_channels=3)
    batches = labelled_batches(recipient, classes=3, size=16)
    variants = _variants(recipient)
    want = np.stack([naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants])
    calls = {"n": 0}
    run_group = PartialForward._run_group

    def flaky(self, group, cache):
        calls["n"] += 1
        if calls["n"] == 5:  # the fifth downstream run, inside the first chunk
            raise RuntimeError("out of memory (simulated)")
        return run_group(self, group, cache)

    monkeypatch.setattr(PartialForward, "_run_group", flaky)
    events: list = []
    result = evaluate_and_store(
        lab,
        _loaded(recipient, donor, batches),
        variants,
        name="flaky",
        recipient="r",
        donor="d",
        data="toy",
        options={"recipient": "r"},
        chunk_variants=4,
        report=events.append,
    )
    np.testing.assert_allclose(result.dice, want, rtol=0, atol=1e-6)
    assert "out of memory (simulated)" in _provenance(lab.path("scans", "flaky"))["engine"]
    assert any(isinstance(e, Message) and e.text.startswith("falling back") for e in events)
    assert all(
        torch.equal(t, recipient.state_dict()[k]) for k, t in pair(MiniUNet, out_channels=3)[0].state_dict().items()
    )


def test_swap_full_forward_gives_the_default_paths_dice(lab) -> None:
    from swap_lab import make_lab

    from reuse_console.engine.swaps.session import SwapSession
    from reuse_console.engine.swaps.swap_lab import run_swap

    make_lab(lab)
    opts = dict(layers="9,18,head", kinds="W", device="cpu")
    fast = run_swap(lab, "seg", "ae", "toy", name="fast", **opts)
    full = run_swap(lab, "seg", "ae", "toy", name="full", partial=False, **opts)
    assert fast.engine == "partial" and full.engine.startswith("full:")
    np.testing.assert_allclose(full.dice, fast.dice, rtol=0, atol=1e-6)
    np.testing.assert_allclose(full.baseline, fast.baseline, rtol=0, atol=1e-6)
    assert np.abs(fast.dice[0] - fast.baseline).max() > 0.01

    session = SwapSession(lab, "seg", "ae", "toy", device="cpu")
    targets = [("9", "W"), ("18", "W"), ("head", "W")]
    default = session.evaluate(targets)
    session.full_forward = True
    whole = session.evaluate(targets)
    assert default.result.extra["engine"] == "partial" and whole.result.extra["engine"] == "full forward"
    np.testing.assert_allclose(whole.result.per_subject, default.result.per_subject, rtol=0, atol=1e-6)
    np.testing.assert_allclose(default.result.per_subject, fast.dice[0], rtol=0, atol=1e-6)
