"""Plans inferred from a predictor (`plan --from rmse|aligned-rmse`) run in a transfer grid beside
the swaps' plan, as examples/predictors.toml does on the demo's lab: one frozen cell each, one epoch,
on a toy lab. A frozen cell must hold exactly its donor's values for the plan's tensors (read from
the donor checkpoints, not from the grid) and have trained the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from predict_lab import scan_with_drops
from swap_lab import make_lab

from reuse_console.engine.compare.align import run_align
from reuse_console.engine.grids.experiment import load_experiment
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.study import Source, Study, TrainSettings, load_study
from reuse_console.engine.reuse.plan_from import plan_from_measure
from reuse_console.engine.reuse.plan_lab import plan_from_lab
from reuse_console.engine.reuse.plans import load_plan
from reuse_console.store.checkpoints import read_checkpoint

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "predictors.toml"


def test_the_grid_trains_from_predictor_plans_beside_the_swaps_plan(lab) -> None:
    make_lab(lab)
    scan_with_drops(lab, "seg", "ae", "s", layers="1-6")
    plan_from_lab(lab, scan="s", name="p-swaps")
    count = sum(t.reusable for t in load_plan(lab, "p-swaps").tensors)
    run_align(lab, "ae", "seg", data="toy", name="ae-al", device="cpu")
    plans = {"swaps": ("ae", "p-swaps")}
    for measure, donor in (("rmse", "ae"), ("aligned-rmse", "ae-al")):
        values = sorted(v for v in _values(lab, measure) if np.isfinite(v))
        threshold = values[len(values) // 2]  # about half the tensors reusable
        plan, agree = plan_from_measure(lab, "s", measure, threshold, name=f"p-{measure}")
        assert 0 < sum(t.reusable for t in plan.tensors) < len(plan.tensors) and agree.tensors > 0
        plans[measure] = (donor, plan.name)
    assert count > 0
    study = Study(
        name="pred",
        target="toy",
        sources=[Source(name, donor, plan) for name, (donor, plan) in plans.items()],
        modes=["freeze"],
        subjects=[2],
        seeds=[0],
        train=TrainSettings(arch_config={"base_width": 4}, epochs=1, batch=4, augment=False),
    )
    run_grid(lab, study, device="cpu")
    exp = load_experiment(lab, "pred")
    assert exp.status == "complete" and [c.source for c in exp.cells] == list(plans)
    for cell in exp.cells:
        assert cell.done
        donor, plan_id = plans[cell.source]
        reused = {t.key for t in load_plan(lab, plan_id).tensors if t.reusable}
        donor_state, _ = read_checkpoint(lab.path("checkpoints", donor))
        trained, _ = read_checkpoint(lab.path("checkpoints", cell.checkpoint))
        assert all(torch.equal(trained[k], donor_state[k]) for k in reused), cell.source
        others = [k for k in trained if k not in reused and k.endswith(".weight")]
        assert any(not torch.equal(trained[k], donor_state[k]) for k in others), cell.source


def _values(lab, measure: str) -> list[float]:
    """The measure's value per swapped tensor (as predict computes it)."""
    from reuse_console.engine.reuse.predict import predict_scan
    from reuse_console.engine.swaps.scan_store import load_scan

    result = predict_scan(lab, load_scan(lab, "s"), measures=[measure], resamples=0)
    return [t.values[0] for t in result.tensors]


def test_example_predictor_study_names_what_the_demo_makes() -> None:
    from reuse_console.engine import demo

    study = load_study(EXAMPLE)
    sources = {s.name: (s.donor, s.plan) for s in study.sources}
    assert list(sources) == ["random", "swaps", "rmse", "aligned-rmse"]
    auto2seg = next(d for d in demo.DONORS if d[0] == "auto2seg")
    assert sources["swaps"] == auto2seg[1:] and sources["rmse"][0] == auto2seg[1]
    assert study.target == demo.MODELS[0][1] and study.reference in {name for name, _, _ in demo.MODELS}
    full = demo.DemoConfig.choose(quick=False)
    assert study.train.arch_config == {"base_width": full.base_width}
