"""`scan --cache-mb`: the tensor tracker counts what a hand count gives, a bounded scan splits its
batches so that its measured peak stays within the bound, and its Dice equals the unbounded scan's
exactly (fp32); a bound one slice cannot meet is one clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from swap_lab import make_lab

from reuse_console.engine.core.events import Message
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.swaps.scan_inputs import evaluate_loaded, load_inputs
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.scan_memory import (
    MB,
    LiveTensors,
    bound_cache,
    largest_batch,
    probe_peak,
    split_batches,
)
from reuse_console.engine.swaps.scan_store import progress_path
from reuse_console.engine.swaps.variants import plan_variants
from reuse_console.store.errors import UserError


def test_live_tensors_counts_new_storages_until_freed() -> None:
    before = torch.zeros(1000)
    tracker = LiveTensors(torch.device("cpu"))
    with torch.inference_mode(), tracker:
        x = torch.ones(250_000)  # 1 MB
        y = x * 2  # 2 MB live
        del x  # 1 MB
        z = y + 1  # 2 MB
        z.add_(1)  # in place: nothing new
        z.view(500, 500)  # a view: nothing new
        before.add_(1)  # a tensor from before the probe: not counted
        del y  # 1 MB
    tracker.sweep()
    assert tracker.peak == 2_000_000
    assert tracker.now == 1_000_000


def test_largest_batch_on_the_line_through_the_probes() -> None:
    # peak 1 MB at 1 slice, 32 MB at 32 slices: 1 MB per extra slice on the line
    assert largest_batch(1e6, 32e6, 32, 40e6) == 32
    assert largest_batch(1e6, 32e6, 32, 10.5e6) == 10  # 1 + 9 slices = 10 MB
    assert largest_batch(1e6, 32e6, 32, 1e6) == 1
    assert largest_batch(1e6, 32e6, 32, 0.5e6) == 0


def test_split_batches_keeps_every_slice_in_order() -> None:
    images = torch.arange(7, dtype=torch.float32).reshape(7, 1, 1, 1)
    batches = [
        EvalBatch(images[:5], torch.arange(5).reshape(5, 1, 1), torch.zeros(5, dtype=torch.long)),
        EvalBatch(images[5:], torch.arange(5, 7).reshape(2, 1, 1), torch.ones(2, dtype=torch.long)),
    ]
    out = split_batches(batches, 2)
    assert [int(b.images.shape[0]) for b in out] == [2, 2, 1, 2]
    assert torch.cat([b.images for b in out]).flatten().tolist() == list(range(7))
    assert torch.cat([b.subject for b in out]).tolist() == [0] * 5 + [1] * 2


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
def test_bounded_scan_stays_within_the_bound_and_gives_the_same_dice(lab, arch: str) -> None:
    from swap_lab import make_checkpoint, make_data

    make_data(lab)
    make_checkpoint(lab, "seg", seed=1, arch=arch)
    make_checkpoint(lab, "ae", task="ae", seed=2, arch=arch)
    loaded = load_inputs(lab, "seg", "ae", "toy", device="cpu")
    variants = plan_variants(loaded.index.layers, KINDS, (1.0, 0.5))
    assert [int(b.images.shape[0]) for b in loaded.batches] == [6]  # two subjects of three slices
    full, one = probe_peak(loaded, variants, 6, "fp32"), probe_peak(loaded, variants, 1, "fp32")
    assert 0 < one < full
    bound_mb = (one + 0.4 * (full - one)) / MB  # between one slice and the whole batch
    events: list = []
    bounded, options = bound_cache(loaded, variants, bound_mb, ("fp32",), events.append)
    chosen = options["eval_batch"]
    assert 1 <= chosen < 6 and options["cache_mb"] == bound_mb
    assert [int(b.images.shape[0]) for b in bounded.batches] == [chosen] * (6 // chosen) + [6 % chosen] * (
        6 % chosen > 0
    )
    assert any(isinstance(e, Message) and f"evaluating {chosen} slices at a time" in e.text for e in events)

    want_base, want, _ = evaluate_loaded(loaded, variants)
    tracker = LiveTensors(torch.device("cpu"))
    with tracker:
        base, dice, engine = evaluate_loaded(bounded, variants)
    assert engine == "partial"
    assert tracker.peak <= bound_mb * MB
    assert tracker.peak < full  # the unbounded scan would not have fitted
    np.testing.assert_array_equal(dice, want)
    np.testing.assert_array_equal(base, want_base)
    assert np.abs(dice - base).max() > 0.01  # the variants really change predictions


def test_scan_with_cache_mb_stores_the_chosen_batch_and_the_same_dice(lab) -> None:
    make_lab(lab)
    opts = dict(layers="1-4,head", kinds="RM,W", device="cpu")
    plain = run_scan(lab, "seg", "ae", "toy", name="plain", **opts)
    loaded = load_inputs(lab, "seg", "ae", "toy", device="cpu")
    variants = plan_variants(loaded.index.select("1-4,head"), ("RM", "W"), (1.0,))
    one, full = probe_peak(loaded, variants, 1, "fp32"), probe_peak(loaded, variants, 6, "fp32")
    bound_mb = round((one + full) / 2 / MB, 3)
    events: list = []
    bounded = run_scan(lab, "seg", "ae", "toy", name="bounded", cache_mb=bound_mb, report=events.append, **opts)
    messages = [e.text for e in events if isinstance(e, Message) and e.text.startswith("--cache-mb")]
    assert len(messages) == 1 and "measured on a probe" in messages[0]
    assert bounded.options["cache_mb"] == bound_mb and 1 <= bounded.options["eval_batch"] < 6
    assert "cache_mb" not in plain.options
    np.testing.assert_array_equal(bounded.dice, plain.dice)
    np.testing.assert_array_equal(bounded.baseline, plain.baseline)


def test_a_bound_one_slice_cannot_meet_is_one_error_and_nothing_stored(lab) -> None:
    make_lab(lab)
    with pytest.raises(UserError, match="one slice alone needs .* MB"):
        run_scan(lab, "seg", "ae", "toy", layers="1", kinds="RM", device="cpu", cache_mb=0.001)
    with pytest.raises(UserError, match="positive number"):
        run_scan(lab, "seg", "ae", "toy", layers="1", kinds="RM", device="cpu", cache_mb=float("nan"))
    assert lab.files("scans") == [] and not progress_path(lab, "seg-vs-ae").exists()
