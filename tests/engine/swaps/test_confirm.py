"""`scan --precision bf16 --confirm`: the variants near a plan threshold are re-evaluated in fp32,
so the plan from a confirmed bf16 scan is the fp32 scan's plan (trained UNet and PSPNet)."""

from __future__ import annotations

import numpy as np
import pytest
from toydata import write_toy

from reuse_console.engine.reuse.plan_lab import plan_from_lab
from reuse_console.engine.swaps.confirm import Confirmation, near_thresholds, worst_drops
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.engine.training.train import train
from reuse_console.store.errors import UserError


def test_worst_drops_and_the_window_by_hand() -> None:
    baseline = np.array([[0.9, 0.8, 0.6], [0.9, 0.6, 0.8]])  # class means: .9 .7 .7
    dice = np.array(
        [
            [[0.9, 0.7, 0.6], [0.9, 0.5, 0.8]],  # .6 .7 -> worst fg drop .10
            [[0.1, 0.66, 0.7], [0.1, 0.66, 0.7]],  # .66 .7 -> .04 (background not judged)
            [[0.9, 0.8, 0.6], [0.9, 0.6, 0.8]],  # unchanged -> 0
            [[np.nan] * 3, [np.nan] * 3],  # not evaluated -> unknown
            [[0.9, np.nan, 0.6], [0.9, 0.5, 0.8]],  # --empty ignore: class 1 empty in subject 0 -> .5 .7 -> .20
        ]
    )
    drops = worst_drops(baseline, dice, [True, True, True])
    assert drops[[0, 1, 2, 4]] == pytest.approx([0.10, 0.04, 0.0, 0.20]) and np.isnan(drops[3])
    window = Confirmation(0.02, (0.05,))
    assert near_thresholds(drops, window).tolist() == [False, True, False, True, False]
    assert near_thresholds(drops, Confirmation(0.02, (0.05, 0.1))).tolist() == [True, True, False, True, False]


@pytest.mark.parametrize(
    ("margin", "at", "precision", "message"),
    [
        (0.02, "0.05", "fp32", "this scan is fp32 already"),
        (0.0, "0.05", "bf16", "between 0 and 1"),
        (0.02, "x", "bf16", "separated by commas"),
        (0.02, "1.5", "bf16", "between 0 and 1"),
    ],
)
def test_bad_confirmation_options(margin, at, precision, message) -> None:
    with pytest.raises(UserError, match=message):
        Confirmation.parse(margin, at, precision)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "config"), [("unet", {"base_width": 4}), ("pspnet", {"width": 0.125})])
def test_a_confirmed_bf16_scan_gives_the_fp32_plan(lab, arch, config) -> None:
    write_toy(lab, n_subjects=6, per_subject=4)
    for name, task in (("seg", "seg"), ("ae", "ae")):
        spec = TrainSpec(data="toy", arch=arch, arch_config=config, task=task, epochs=4, batch=4, name=name, seed=0)
        train(lab, spec, device="cpu")
    exact = run_scan(lab, "seg", "ae", "toy", precision="fp32", device="cpu", name="fp32")
    fast = run_scan(
        lab, "seg", "ae", "toy", precision="bf16", device="cpu", name="bf16", confirm=0.02, confirm_at="0.05,0.1"
    )
    assert fast.confirmed is not None and fast.fast_dice is not None and fast.fast_baseline is not None
    assert not fast.confirmed.all()  # selective: most variants keep their bf16 value
    # what was confirmed is the fp32 scan's value, bit for bit; the rest is bf16 and far from 0.05 and 0.1
    np.testing.assert_array_equal(fast.baseline, exact.baseline)
    np.testing.assert_array_equal(fast.dice[fast.confirmed], exact.dice[fast.confirmed])
    fast_drops = worst_drops(fast.fast_baseline, fast.fast_dice, fast.present)
    assert np.all(np.minimum(abs(fast_drops - 0.05), abs(fast_drops - 0.1))[~fast.confirmed] > 0.02)
    for limit in (0.05, 0.1):
        from_fp32 = plan_from_lab(lab, scan="fp32", max_dice_drop=limit, name=f"p32-{limit}")
        from_bf16 = plan_from_lab(lab, scan="bf16", max_dice_drop=limit, name=f"p16-{limit}")
        assert from_bf16.keys() == from_fp32.keys()
