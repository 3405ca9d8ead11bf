"""The demo wires every stage together and a second run redoes nothing."""

from __future__ import annotations

import pytest

from reuse_console.engine import demo
from reuse_console.engine.core.events import Event, Message
from reuse_console.engine.grids.experiment import load_experiment
from reuse_console.engine.swaps.scan_store import load_scan


@pytest.mark.slow
def test_tiny_demo_makes_every_object_and_reruns_as_a_no_op(lab, monkeypatch) -> None:
    tiny = demo.DemoConfig(
        subjects={"acdc": 5, "t1": 4, "rvsc": 4},
        size=32,
        base_width=4,
        epochs=1,
        grid_epochs=1,
        grid_subjects=(2,),
        grid_seeds=(0,),
        batch=4,
    )
    monkeypatch.setattr(demo.DemoConfig, "choose", classmethod(lambda cls, quick: tiny))
    events: list[Event] = []
    result = demo.run_demo(lab, quick=True, device="cpu", precision="fp32", report=events.append)

    assert result.datasets == ["acdc", "t1", "rvsc"]
    for name, _, _ in demo.MODELS:
        assert lab.path("checkpoints", name).exists()
    assert all(lab.path("scans", s).exists() for s in result.scans) and len(result.scans) == 8
    assert all(lab.path("checkpoints", m[0]).exists() for m in demo.SEED_MODELS)
    pair = [load_scan(lab, s) for s in (demo.SCAN, demo.PAIR_SCAN)]
    assert [(s.recipient, s.donor) for s in pair] == [tuple(p.split(":")) for p in demo.PAIRS.split(",")]
    assert all(s.options["pairs"] == demo.PAIRS and s.recalibrated is not None for s in pair)
    assert all(lab.path("plans", p).exists() for p in result.plans) and len(result.plans) == 3
    exp = load_experiment(lab, result.experiment)
    assert exp.status == "complete"
    assert len(exp.cells) == 1 + 3 * 2 + 3 * 2  # random, 3 donors and 3 controls x (freeze, finetune)
    found = demo.control_findings(lab)
    assert found.reused > 0 and 0 <= found.fine_at_init <= found.reused
    assert found.rm_rv_drop == found.rm_rv_drop and found.rm_rv_drop_recalibrated == found.rm_rv_drop_recalibrated
    assert any(p.name.endswith(".png") for p in result.figures)
    assert len(result.similarity) == 3 and all(lab.path("comparisons", p).exists() for p in result.predictors)
    index = (lab.root / "figures" / "index.md").read_text()
    assert "×2 pairs" in index and "init:" in index  # the overlay: pair set, its recalibration, init

    again: list[Event] = []
    demo.run_demo(lab, quick=True, device="cpu", precision="fp32", report=again.append)
    stages = [e.text for e in again if isinstance(e, Message) and e.text.startswith("[demo]")]
    assert [t for t in stages if not t.startswith("[demo] report")] == []
