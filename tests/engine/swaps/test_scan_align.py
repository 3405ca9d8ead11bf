"""`scan --align` and `swap --align`: the donor's channels reordered to the recipient's before swapping."""

from __future__ import annotations

import numpy as np
import torch
from predict_lab import permuted_copy
from swap_lab import make_lab

from reuse_console.engine.compare.align_states import aligned_donor
from reuse_console.engine.swaps.scan_inputs import load_inputs
from reuse_console.engine.swaps.scan_lab import run_scan


def test_aligned_scan_of_a_permuted_copy_changes_nothing(lab) -> None:
    make_lab(lab)
    permuted_copy(lab, "seg", "perm")
    opts = dict(layers="1-4,head", kinds="RM,RV,W", device="cpu")
    raw = run_scan(lab, "seg", "perm", "toy", name="raw", **opts)
    aligned = run_scan(lab, "seg", "perm", "toy", align=aligned_donor, **opts)
    assert aligned.name == "seg-vs-perm-aligned" and aligned.options["align"] == "weights"
    assert "align" not in raw.options
    # the aligned donor's tensors are the recipient's: every swap gives the baseline's Dice exactly
    assert np.array_equal(aligned.dice, np.broadcast_to(aligned.baseline, aligned.dice.shape))
    # what the scans swapped in: the aligned donor's tensors are the recipient's, the raw ones are not
    loaded = load_inputs(lab, "seg", "perm", "toy", device="cpu", align=aligned_donor)
    plain = load_inputs(lab, "seg", "perm", "toy", device="cpu")
    recipient = loaded.model.state_dict()
    assert all(torch.equal(loaded.donor[k], recipient[k]) for k in recipient if k.endswith(("weight", "running_mean")))
    assert not torch.equal(plain.donor["enc1.conv1.weight"], recipient["enc1.conv1.weight"])
