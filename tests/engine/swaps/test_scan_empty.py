"""scan/swap --empty one|ignore and --per subject|volume, against MONAI's compute_dice on predictions
made the naive way (a copy of the model with the tensor swapped, whole forward)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from frames_lab import make_frames

from reuse_console.engine.data.slices import SliceSet
from reuse_console.store.lab import Lab

monai_metrics = pytest.importorskip("monai.metrics")


class Killed(Exception):
    pass


def _onehot(x: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), 4).movedim(-1, 0)[None].float()


def monai_dice(model: torch.nn.Module, slices: SliceSet, units: list[np.ndarray], ignore: bool) -> np.ndarray:
    """(U, C) Dice of `model`'s argmax per unit (rows of slices), by MONAI on the whole unit at once."""
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(slices.images).unsqueeze(1)).argmax(dim=1).numpy()
    return np.stack(
        [
            monai_metrics.compute_dice(
                _onehot(pred[rows]), _onehot(slices.labels[rows]), include_background=True, ignore_empty=ignore
            )[0].numpy()
            for rows in units
        ]
    )


def monai_mean(per_unit: np.ndarray) -> np.ndarray:
    """MONAI's mean over units (its reduction leaves NaN, ignored classes, out)."""
    from monai.metrics.utils import do_metric_reduction

    return do_metric_reduction(torch.from_numpy(per_unit), "mean_batch")[0].numpy()


def swapped_model(lab: Lab, key: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    from reuse_console.engine.models.registry import load_model

    model, _ = load_model(lab, "seg")
    donor, _ = load_model(lab, "ae")
    swapped = copy.deepcopy(model)
    state = swapped.state_dict()
    state[key] = donor.state_dict()[key]
    swapped.load_state_dict(state)
    return model, swapped


@pytest.mark.parametrize("per", ["subject", "volume"])
def test_scan_dice_under_both_rules_equals_monai(lab: Lab, per: str) -> None:
    from swap_lab import make_checkpoint

    from reuse_console.engine.reuse.plans import scan_dice_drops
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.scan_store import load_scan

    slices = make_frames(lab)
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    val = np.flatnonzero(np.isin(slices.subject, [2, 3]))
    key_of = slices.volume if per == "volume" else slices.subject
    units = [val[key_of[val] == u] for u in dict.fromkeys(key_of[val].tolist())]
    opts = dict(layers="1,18", kinds="W", device="cpu", per=per)
    one = run_scan(lab, "seg", "ae", "frames", name="one", **opts)
    ignore = run_scan(lab, "seg", "ae", "frames", name="ignore", empty="ignore", **opts)
    want_units = ["patient002_ED", "patient002_ES", "patient003_ED", "patient003_ES"]
    assert one.subjects == (want_units if per == "volume" else ["patient002", "patient003"])
    for i, variant in enumerate(one.variants):
        model, swapped = swapped_model(lab, variant.keys[0])
        for result, flag in ((one, False), (ignore, True)):
            stored = load_scan(lab, result.name)
            base, dice = monai_dice(model, slices, units, flag), monai_dice(swapped, slices, units, flag)
            np.testing.assert_allclose(stored.baseline, base, atol=1e-6, equal_nan=True)
            np.testing.assert_allclose(stored.dice[i], dice, atol=1e-6, equal_nan=True)
            np.testing.assert_allclose(stored.baseline_mean, monai_mean(base), atol=1e-6)
            np.testing.assert_allclose(stored.mean[i], monai_mean(dice), atol=1e-6)
    rv_empty = np.isnan(ignore.baseline[:, 1])
    assert rv_empty.tolist() == ([False, True, True, True] if per == "volume" else [False, True])
    assert np.isfinite(one.baseline).all() and np.isfinite(ignore.baseline[:, [0, 2, 3]]).all()
    assert not np.allclose(one.baseline_mean[1], ignore.baseline_mean[1])  # the rule changes the RV mean
    stored = load_scan(lab, "ignore")
    assert stored.options["empty"] == "ignore" and "empty" not in load_scan(lab, "one").options
    assert (stored.options.get("per") == "volume") == (per == "volume")
    assert stored.done.all() and {e.id: e.summary.get("empty") for e in lab.entries("scans")} == {
        "ignore": "ignore",
        "one": None,
    }
    out = stored.to_json()
    assert out["empty"] == "ignore" and out["dice_per"] == per
    assert out["baseline"]["per_subject"][stored.subjects[1]]["RV"] is None  # NaN: JSON null, never NaN
    drops = scan_dice_drops(stored)  # plans read the rule's means: a finite drop per tensor
    assert len(drops) == 2 and all(np.isfinite(list(drops.values())))


def test_killed_ignore_scan_resumes_keeping_variants_with_empty_cells(lab: Lab) -> None:
    from swap_lab import make_checkpoint

    from reuse_console.engine.core.events import VariantDone
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.scan_store import progress_path, read_scan
    from reuse_console.store.errors import UserError

    make_frames(lab)
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    opts = dict(layers="1-4", kinds="RM,W", device="cpu", chunk_variants=2, empty="ignore")
    full = run_scan(lab, "seg", "ae", "frames", name="full", **opts)

    def kill_in_third_chunk(event: object) -> None:
        if isinstance(event, VariantDone) and event.index == 5:
            raise Killed

    with pytest.raises(Killed):
        run_scan(lab, "seg", "ae", "frames", report=kill_in_third_chunk, **opts)
    partial = read_scan(progress_path(lab, "seg-vs-ae"))
    assert np.isnan(partial.baseline[1, 1])  # the progress file keeps the rule's NaN cells
    kept = int(partial.done.sum())
    assert kept == 4
    with pytest.raises(UserError, match="started with empty"):
        run_scan(lab, "seg", "ae", "frames", resume=True, **{**opts, "empty": "one"})
    events: list = []
    resumed = run_scan(lab, "seg", "ae", "frames", resume=True, report=events.append, **opts)
    assert len([e for e in events if isinstance(e, VariantDone)]) == len(full.variants) - kept
    np.testing.assert_array_equal(resumed.dice, full.dice)
    np.testing.assert_array_equal(resumed.baseline, full.baseline)


def test_swap_and_bad_rules(lab: Lab) -> None:
    from swap_lab import make_checkpoint, make_data

    from reuse_console.engine.swaps.swap_lab import run_swap
    from reuse_console.store.errors import UserError

    slices = make_frames(lab)
    make_data(lab)  # "toy": no volumes recorded
    make_checkpoint(lab, "seg", seed=1)
    make_checkpoint(lab, "ae", task="ae", seed=2)
    result = run_swap(lab, "seg", "ae", "frames", layers="1-3", kinds="RM,RV", device="cpu", empty="ignore")
    model, _ = swapped_model(lab, result.variants[0].keys[0])
    val = np.flatnonzero(np.isin(slices.subject, [2, 3]))
    units = [val[slices.subject[val] == s] for s in (2, 3)]
    np.testing.assert_allclose(result.baseline, monai_dice(model, slices, units, True), atol=1e-6, equal_nan=True)
    assert result.options["empty"] == "ignore"
    with pytest.raises(UserError, match="--empty maybe"):
        run_swap(lab, "seg", "ae", "frames", layers="1", kinds="RM", device="cpu", empty="maybe")
    with pytest.raises(UserError, match="--per frame"):
        run_swap(lab, "seg", "ae", "frames", layers="1", kinds="RM", device="cpu", per="frame")
    with pytest.raises(UserError, match="records no volumes"):
        run_swap(lab, "seg", "ae", "toy", layers="1", kinds="RM", device="cpu", per="volume")
