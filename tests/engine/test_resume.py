"""Kill a real training process with SIGKILL after its first epoch, resume it, and get the same
weights, bit for bit, as a run that was never interrupted (CPU, same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reuse_console.store.checkpoints import read_checkpoint, read_meta
from reuse_console.store.runs import read_run
from toydata import write_toy

ARGS = ["--data", "toy", "--arch-config", '{"base_width": 4}', "--epochs", "3", "--batch", "4", "--seed", "5",
        "--device", "cpu", "--progress", "jsonl"]


def _cli(lab_root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "reuse_console.tui.cli", "--lab", str(lab_root), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkilled_then_resumed_run_equals_uninterrupted_run(lab) -> None:
    write_toy(lab, n_subjects=4, per_subject=12)  # 36 training slices: 9 steps per epoch
    subprocess.run(_cli(lab.root, "train", *ARGS, "--name", "straight"), env=_env(), check=True,
                   stdout=subprocess.DEVNULL, timeout=300)

    proc = subprocess.Popen(_cli(lab.root, "train", *ARGS, "--name", "killed"), env=_env(),
                            stdout=subprocess.PIPE, text=True)
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

    out = subprocess.run(_cli(lab.root, "train", "--resume", "killed", "--device", "cpu", "--progress", "jsonl"),
                         env=_env(), check=True, capture_output=True, text=True, timeout=300)
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
