"""Real cluster engines for the cluster tests: a one-node SLURM (tests/cluster/slurm.sh) and a local
Ray head on 127.0.0.1 with this test's own ports, both stopped by the tests that started them; and
a tiny 4-cell grid with its local result to compare against bit for bit (CPU, one torch thread)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from toydata import write_toy

from reuse_console.engine.grids.experiment import Experiment
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.study import Source, Study, TrainSettings
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.lab import Lab

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def tiny_study(epochs: int = 2) -> Study:
    """4 cells: random init, 2 and 3 training subjects, seeds 0 and 1 (a base-width-4 UNet)."""
    return Study(
        name="g",
        target="toy",
        sources=[Source("random")],
        subjects=[2, 3],
        seeds=[0, 1],
        train=TrainSettings(arch_config={"base_width": 4}, epochs=epochs, batch=4, augment=False),
    )


def make_lab(root: Path) -> Lab:
    lab = Lab(root)
    write_toy(lab)
    return lab


@pytest.fixture(scope="module")
def local_result(tmp_path_factory) -> dict[int, Experiment]:
    """The local executor's results per epoch count, computed once per module (lazily)."""
    cache: dict[int, Experiment] = {}
    root = tmp_path_factory.mktemp("local")

    def get(epochs: int) -> Experiment:
        if epochs not in cache:
            torch.set_num_threads(1)
            lab = make_lab(root / f"lab{epochs}")
            cache[epochs] = (lab, run_grid(lab, tiny_study(epochs), device="cpu"))
        return cache[epochs]

    return get  # type: ignore[return-value]


def assert_same_results(lab: Lab, exp: Experiment, ref_lab: Lab, ref: Experiment) -> None:
    """Dice of every cell and every tensor of every cell's evaluated checkpoint are bit-identical."""
    assert [c.name for c in exp.cells] == [c.name for c in ref.cells]
    for cell, ref_cell in zip(exp.cells, ref.cells):
        assert cell.done and np.array_equal(cell.dice, ref_cell.dice, equal_nan=True), cell.name
        state, _ = read_checkpoint(lab.path("checkpoints", cell.checkpoint))
        ref_state, _ = read_checkpoint(ref_lab.path("checkpoints", ref_cell.checkpoint))
        assert state.keys() == ref_state.keys()
        for key in state:
            assert torch.equal(state[key], ref_state[key]), (cell.name, key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster on this host for the module; skipped with slurm.sh's reason."""
    folder = Path(tempfile.mkdtemp(prefix="rc-slurm-", dir="/tmp"))  # the munge user must reach it: not under
    folder.chmod(0o755)  # pytest's private (0700) temp folders
    port = free_port()
    up = subprocess.run(
        ["bash", str(HERE / "slurm.sh"), "up", str(folder), str(port)], capture_output=True, text=True, timeout=120
    )
    if up.returncode != 0:
        pytest.skip(up.stderr.strip().splitlines()[-1] if up.stderr.strip() else f"slurm.sh up exited {up.returncode}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield folder
    finally:
        subprocess.run(["bash", str(HERE / "slurm.sh"), "down", str(folder)], timeout=120, check=False)
        shutil.rmtree(folder, ignore_errors=True)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on 127.0.0.1 with ports of its own, in its own session; the address."""
    ray_bin = VENV_BIN / "ray"
    if not ray_bin.exists() and shutil.which("ray") is None:
        pytest.skip("ray is not installed (pip install 'reuse-console[ray]')")
    temp = Path("/tmp") / f"rc-ray-{os.getpid()}"  # Ray's socket paths must stay short
    ports = [free_port() for _ in range(6)]
    low = 20000 + (os.getpid() % 2000) * 10
    cmd = [
        str(ray_bin if ray_bin.exists() else shutil.which("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={ports[0]}",
        f"--node-manager-port={ports[1]}",
        f"--object-manager-port={ports[2]}",
        f"--dashboard-agent-listen-port={ports[4]}",
        f"--metrics-export-port={ports[5]}",
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 9}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path_factory.mktemp("raylog") / "ray.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    address = f"127.0.0.1:{ports[0]}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.skip(f"ray start --head exited {proc.returncode} (see {log.name})")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", ports[0])) == 0:
                    break
            time.sleep(0.5)
        else:
            pytest.skip("the Ray head did not listen within 90 s")
        time.sleep(2)
        yield address
    finally:
        stop_group(proc, str(temp))
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def stop_group(proc: subprocess.Popen, marker: str) -> None:
    """Stop the Ray head this test started: the processes of its session, and any that name its
    own temp dir (workers), by their ids."""
    import psutil

    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = -2
    members = [p for p in psutil.process_iter() if _pgid(p) == pgid or marker in _cmdline(p)]
    members = [p for p in members if p.pid != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in members:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        gone, members = psutil.wait_procs(members, timeout=15)
        if not members:
            break
    proc.wait(timeout=10)


def _cmdline(p) -> str:
    try:
        return " ".join(p.cmdline())
    except Exception:
        return ""


def _pgid(p) -> int:
    try:
        return os.getpgid(p.pid)
    except (ProcessLookupError, PermissionError):
        return -1
