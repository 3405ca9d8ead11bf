"""CKA of a model with itself after alignment is 1: alignment permutes channels, CKA does not see order."""

from __future__ import annotations

import numpy as np
from swap_lab import make_checkpoint, make_lab

from reuse_console.engine.compare.align import run_align
from reuse_console.engine.compare.cka_lab import run_cka


def test_cka_of_a_model_and_its_alignment_is_one_at_every_layer(lab) -> None:
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=5)
    result = run_align(lab, "seg2", "seg", data="toy", name="al", device="cpu")
    assert result.moved() > 0  # the channels did move
    sim = run_cka(lab, ["seg2", "al", "seg"], "toy", device="cpu", name="c")
    pair = sim.pairs.index((0, 1))
    assert np.allclose(sim.linear[pair], 1.0, atol=1e-6)
    finite = np.isfinite(sim.debiased[pair])
    assert finite.any() and np.allclose(sim.debiased[pair][finite], 1.0, atol=1e-6)
    # and it is not 1 for free: the other seed's model differs at some layer
    assert (sim.linear[sim.pairs.index((0, 2))] < 0.999).any()
