"""Kill a real training process with SIGKILL after its first epoch, resume it, and get the same
weights, bit for bit, as a run that was never interrupted (CPU, same seed); and resume a run
interrupted before its first checkpoint or after its last one (bench/stress.py found both)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from toydata import write_toy

from reuse_console.engine.core.events import EpochEnd, StepEnd
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.study import Source, Study, TrainSettings
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe
from reuse_console.engine.training.train import TrainSpec, resume_training, train
from reuse_console.store.checkpoints import read_checkpoint, read_meta
from reuse_console.store.errors import UserError
from reuse_console.store.runs import read_run

ARGS = [
    "--data",
    "toy",
    "--arch-config",
    '{"base_width": 4}',
    "--epochs",
    "3",
    "--batch",
    "4",
    "--seed",
    "5",
    "--device",
    "cpu",
    "--progress",
    "jsonl",
]


def _cli(lab_root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reuse_console.tui.cli", "--lab", str(lab_root), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkilled_then_resumed_run_equals_uninterrupted_run(lab) -> None:
    write_toy(lab, n_subjects=4, per_subject=12)  # 36 training slices: 9 steps per epoch
    subprocess.run(
        _cli(lab.root, "train", *ARGS, "--name", "straight"),
        env=_env(),
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )

    proc = subprocess.Popen(
        _cli(lab.root, "train", *ARGS, "--name", "killed"), env=_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line)["type"] == "epoch_end":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    interrupted_at = read_meta(lab.path("checkpoints", "killed.last")).epoch
    assert 1 <= interrupted_at < 3, "the run should have been killed before it finished"
    assert read_run(lab.path("runs", "killed")).status == "lost"

    out = subprocess.run(
        _cli(lab.root, "train", "--resume", "killed", "--device", "cpu", "--progress", "jsonl"),
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events[0]["type"] == "message" and f"after epoch {interrupted_at}" in events[0]["text"]
    assert [e["epoch"] for e in events if e["type"] == "epoch_end"] == list(range(interrupted_at + 1, 4))

    for suffix in (".last", ""):
        straight, straight_meta = read_checkpoint(lab.path("checkpoints", f"straight{suffix}"))
        resumed, resumed_meta = read_checkpoint(lab.path("checkpoints", f"killed{suffix}"))
        assert straight.keys() == resumed.keys()
        different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
        assert different == [], f"tensors differ after resume: {different[:5]}"
        assert straight_meta.epoch == resumed_meta.epoch

    a, b = read_run(lab.path("runs", "straight")), read_run(lab.path("runs", "killed"))
    assert b.status == "finished"
    assert np.array_equal(a.steps["loss"], b.steps["loss"])
    assert np.array_equal(a.steps["step"], b.steps["step"])
    assert np.array_equal(a.epochs["val_dice_fg"], b.epochs["val_dice_fg"])


# -- interruptions at the edges of a run (in process: an interrupt raised from the reporter) --------

TINY = {"base_width": 4}


def _interrupt_at(kind: type, nth: int = 1):
    """A reporter that raises KeyboardInterrupt at the nth event of `kind` (what Ctrl-C or a kill does
    to the work after that point: nothing more is written)."""
    seen = []

    def report(event) -> None:
        if isinstance(event, kind):
            seen.append(event)
            if len(seen) == nth:
                raise KeyboardInterrupt

    return report


def _same_checkpoints(lab, a: str, b: str) -> None:
    for suffix in (".last", ""):
        sa, ma = read_checkpoint(lab.path("checkpoints", f"{a}{suffix}"))
        sb, mb = read_checkpoint(lab.path("checkpoints", f"{b}{suffix}"))
        assert sa.keys() == sb.keys() and ma.epoch == mb.epoch
        assert [k for k in sa if not torch.equal(sa[k], sb[k])] == []


def _plan_lab(lab):
    write_toy(lab)
    train(
        lab,
        TrainSpec(data="toy", arch_config=TINY, epochs=1, batch=4, name="donor", augment=False, seed=5),
        device="cpu",
    )
    index = LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, **TINY)), 1, 64)
    plan = ReusePlan("p", "unet", universe(index))
    save_plan(
        lab,
        plan.with_reusable(
            {(layer.name, k) for layer in index for k in layer.kinds if layer.index and layer.index < 10}
        ),
    )
    return lab


@pytest.mark.parametrize("transfer", [False, True], ids=["scratch", "frozen-transfer"])
def test_run_interrupted_before_its_first_checkpoint_resumes_from_epoch_0(lab, transfer) -> None:
    # The run file exists but no `.last` yet: resume used to fail ("cannot be resumed") while a new
    # `train --name` refused the taken name. Now resume trains it from epoch 0, from the stored spec.
    _plan_lab(lab) if transfer else write_toy(lab)
    extra = {"init": "donor", "plan": "p", "mode": "freeze"} if transfer else {}
    spec = TrainSpec(data="toy", arch_config=TINY, epochs=2, batch=4, seed=2, **extra)
    train(lab, dataclasses.replace(spec, name="straight"), device="cpu")
    with pytest.raises(KeyboardInterrupt):
        train(lab, dataclasses.replace(spec, name="cut"), device="cpu", report=_interrupt_at(StepEnd))
    assert lab.path("runs", "cut").exists() and not lab.path("checkpoints", "cut.last").exists()
    with pytest.raises(UserError, match="already exists"):
        train(lab, dataclasses.replace(spec, name="cut"), device="cpu")

    events = []
    result = resume_training(lab, "cut", device="cpu", report=events.append)
    assert result.epochs == 2 and "from epoch 1" in events[0].text
    _same_checkpoints(lab, "straight", "cut")
    a, b = read_run(lab.path("runs", "straight")), read_run(lab.path("runs", "cut"))
    assert b.status == "finished" and np.array_equal(a.steps["loss"], b.steps["loss"])
    assert np.array_equal(a.epochs["val_dice_fg"], b.epochs["val_dice_fg"])


def test_run_interrupted_after_its_last_checkpoint_is_marked_finished(lab) -> None:
    # All epochs are in the checkpoints but the run file still says running/cancelled: resume used
    # to refuse ("already finished", exit 2) and the run read "lost" for good.
    write_toy(lab)
    spec = TrainSpec(data="toy", arch_config=TINY, epochs=2, batch=4, seed=2, name="end")
    with pytest.raises(KeyboardInterrupt):
        train(lab, spec, device="cpu", report=_interrupt_at(EpochEnd, nth=2))
    assert read_meta(lab.path("checkpoints", "end.last")).epoch == 2
    assert read_run(lab.path("runs", "end")).status == "cancelled"
    weights = read_checkpoint(lab.path("checkpoints", "end.last"))[0]

    events = []
    result = resume_training(lab, "end", device="cpu", report=events.append)
    assert result.epochs == 2 and result.best_epoch in (1, 2) and "marked finished" in events[0].text
    history = read_run(lab.path("runs", "end"))
    assert history.status == "finished" and history.n_epochs == 2
    after = read_checkpoint(lab.path("checkpoints", "end.last"))[0]
    assert all(torch.equal(weights[k], after[k]) for k in weights)  # nothing was trained again
    with pytest.raises(UserError, match="already finished"):
        resume_training(lab, "end", device="cpu")


def test_grid_resume_marks_a_cell_killed_after_its_last_epoch_finished(lab) -> None:
    write_toy(lab)
    study = Study(
        name="g",
        target="toy",
        sources=[Source("random")],
        modes=["freeze"],
        subjects=[2],
        seeds=[0],
        train=TrainSettings(arch_config=TINY, epochs=1, batch=4, augment=False),
    )
    with pytest.raises(KeyboardInterrupt):
        run_grid(lab, study, device="cpu", report=_interrupt_at(EpochEnd))
    cid = "g.random-n2-s0"
    assert read_run(lab.path("runs", cid)).status == "cancelled"
    exp = run_grid(lab, study, device="cpu", resume=True)
    assert exp.status == "complete" and read_run(lab.path("runs", cid)).status == "finished"
