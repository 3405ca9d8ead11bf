"""`--threads`: every command that runs torch takes it, and the process really runs with that many threads.

The thread counts are read in a fresh `reuse-console` process (torch's pool is per process and
set once), started with OMP_NUM_THREADS=3 so that neither torch's own default nor the
environment can pass for the option.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from swap_lab import make_lab

from reuse_console.store.lab import Lab
from reuse_console.store.runs import read_run

COMMANDS = ["train", "eval", "swap", "scan", "grid", "rmse", "bn", "demo"]
TINY = ["--arch-config", '{"base_width": 4}', "--batch", "4", "--device", "cpu"]
# Runs the real entry point, then says how many threads torch ended up with (stderr, last line).
PROBE = (
    "import sys, torch\n"
    "from reuse_console.tui.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    print(f'threads {torch.get_num_threads()} {torch.get_num_interop_threads()}', file=sys.stderr)\n"
)


def run_probe(lab: Lab, *argv: str) -> tuple[int, int]:
    """(intra-op, inter-op) torch threads of `reuse-console --lab LAB ARGV` after it ran; it must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "--lab", str(lab.root), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1].split()
    assert last[0] == "threads", proc.stderr
    return int(last[1]), int(last[2])


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_runs_torch_takes_threads(cli, command: str) -> None:
    code, out, _ = cli(command, "--help")
    words = " ".join(out.replace("│", " ").split())  # the help as one line, without the box
    assert code == 0
    assert "--threads <int> CPU threads for torch" in words and "the safe choice on a busy box" in words, words


@pytest.mark.slow
def test_train_scan_and_eval_run_torch_with_the_threads_given(tmp_path: Path) -> None:
    lab = make_lab(Lab(tmp_path / "lab"))
    # train: the run file records what torch ran with, read back from the lab
    assert run_probe(lab, "train", "--data", "toy", "--epochs", "1", *TINY, "--name", "t2", "--threads", "2") == (2, 2)
    assert read_run(lab.path("runs", "t2")).meta["threads"] == 2
    assert run_probe(lab, "train", "--data", "toy", "--epochs", "1", *TINY, "--name", "t1", "--threads", "1") == (1, 1)
    assert read_run(lab.path("runs", "t1")).meta["threads"] == 1
    # scan and eval: the process's own count
    scan = ["scan", "seg", "ae", "--data", "toy", "--layers", "1", "--kinds", "RM", "--device", "cpu"]
    assert run_probe(lab, *scan, "--name", "s2", "--threads", "2") == (2, 2)
    assert run_probe(lab, "eval", "seg", "--device", "cpu", "--threads", "2") == (2, 2)
    # the CPU default is one thread, whatever OMP_NUM_THREADS the shell had
    assert run_probe(lab, "eval", "seg", "--device", "cpu") == (1, 1)
