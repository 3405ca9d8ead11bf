"""Cluster building blocks without a cluster: content names, NFS-safe leases, private task folders,
executor settings and the task's own spec check. Fast: no training."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import socket
import time

import pytest

from reuse_console.engine.grids.cells import cell_spec, run_id
from reuse_console.engine.grids.leases import holding_lease, lease_path, read_lease, try_take
from reuse_console.engine.grids.naming import CONTENT, content_name
from reuse_console.engine.grids.remote import parse_spec, task_argv
from reuse_console.engine.grids.study import Source, Study, TrainSettings
from reuse_console.engine.jobs.executors import check_private, executor_settings
from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError


def _study(name: str, source: str = "random", seeds=(0, 1)) -> Study:
    return Study(
        name=name,
        target="toy",
        sources=[Source(source)],
        subjects=[2],
        seeds=list(seeds),
        train=TrainSettings(arch_config={"base_width": 4}, epochs=2, batch=4, augment=False),
    )


def test_content_name_is_the_hash_of_the_spec_without_its_name() -> None:
    spec = TrainSpec(data="toy", arch_config={"base_width": 4}, epochs=2, seed=3, name="whatever")
    fields = {**spec.to_dict(), "name": None}
    by_hand = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert content_name(spec) == f"cell-{by_hand}"
    assert content_name(TrainSpec(data="toy", arch_config={"base_width": 4}, epochs=2, seed=4)) != content_name(spec)


def test_two_grids_share_a_cell_and_other_cells_differ() -> None:
    a, b = _study("a"), _study("b", source="scratch-again", seeds=(1, 2))
    names_a = {run_id(a, "a", c, CONTENT) for c in a.cells()}
    names_b = {run_id(b, "b", c, CONTENT) for c in b.cells()}
    assert len(names_a) == 2 and len(names_b) == 2
    assert len(names_a & names_b) == 1  # seed 1, same data and settings: one run, whatever the source's name
    # experiment naming keeps the readable local names
    assert {run_id(a, "a", c) for c in a.cells()} == {"a.random-n2-s0", "a.random-n2-s1"}


def test_lease_is_exclusive_and_released(tmp_path) -> None:
    path = lease_path(tmp_path, "cell-x")
    with holding_lease(path, "cell x", lease_s=30) as lease:
        info = read_lease(path)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["token"] == lease.token
        assert try_take(path, 30) is None  # held by a live process here
        with pytest.raises(UserError, match=r"cell x is being trained by pid \d+ on "):
            with holding_lease(path, "cell x", lease_s=30):
                pass
    assert not path.exists()


def _hold_and_die(path: str) -> None:
    lease = try_take(__import__("pathlib").Path(path), 600)
    assert lease is not None
    os._exit(0)  # dies without releasing: a SIGKILLed task


def test_a_dead_holders_lease_is_broken_here_and_an_expired_one_anywhere(tmp_path) -> None:
    path = lease_path(tmp_path, "cell-y")
    p = mp.get_context("spawn").Process(target=_hold_and_die, args=(str(path),))
    p.start()
    p.join(60)
    assert read_lease(path)["pid"] == p.pid  # left behind, 600 s to go
    lease = try_take(path, 30)  # same host, holder gone: taken at once
    assert lease is not None and read_lease(path)["token"] == lease.token
    # a holder on another node that stopped renewing: only its expiry frees the cell
    path.write_text(json.dumps({"host": "other-node", "pid": 1, "token": "t", "expires": time.time() + 60}))
    assert try_take(path, 30) is None
    path.write_text(json.dumps({"host": "other-node", "pid": 1, "token": "t", "expires": time.time() - 1}))
    taken = try_take(path, 30)
    assert taken is not None and read_lease(path)["host"] == socket.gethostname()


def test_lease_is_renewed_while_held(tmp_path) -> None:
    path = lease_path(tmp_path, "cell-z")
    with holding_lease(path, "cell z", lease_s=0.4):
        first = read_lease(path)["expires"]
        time.sleep(0.35)
        assert read_lease(path)["expires"] > first  # renewed every lease/4
        assert try_take(path, 1) is None


def test_task_folder_is_private_and_unsafe_ones_are_refused(lab, tmp_path) -> None:
    lab.root.mkdir(parents=True)
    folder = check_private(lab.root / "jobs" / "slurm" / "g", lab)
    assert folder.stat().st_mode & 0o777 == 0o700
    folder.chmod(0o770)
    with pytest.raises(UserError, match="writable by other users"):
        check_private(folder, lab)
    folder.chmod(0o700)
    lab.root.chmod(0o777)  # a lab anyone can write, without the sticky bit
    with pytest.raises(UserError, match="writable by other users.*chmod go-w"):
        check_private(folder, lab)
    lab.root.chmod(0o1777)  # sticky: others cannot rename our folders away
    assert check_private(folder, lab) == folder
    lab.root.chmod(0o755)


def test_executor_settings_from_table_and_options() -> None:
    s = executor_settings({"kind": "slurm", "partition": "gpu", "gpus_per_task": 1, "sbatch": {"qos": "high"}})
    assert (s.kind, s.partition, s.gpus_per_task, s.sbatch, s.naming) == ("slurm", "gpu", 1, {"qos": "high"}, CONTENT)
    s = executor_settings({"kind": "slurm", "partition": "gpu"}, kind="ray", partition=None)
    assert s.kind == "ray" and s.partition == "gpu"  # an option given wins, one not given keeps the table's
    assert executor_settings().naming == "experiment"
    for table, message in (
        ({"kind": "pbs"}, "executor must be one of local, slurm, ray"),
        ({"gpu": 1}, "unknown field 'gpu'"),
        ({"cpus_per_task": 0}, "cpus_per_task must be a whole number >= 1"),
        ({"max_retries": True}, "max_retries must be a whole number"),
        ({"lease_s": -1}, "lease_s must be a positive number"),
        ({"sbatch": "--qos=high"}, "sbatch must be a table"),
    ):
        with pytest.raises(UserError, match=message):
            executor_settings(table)


def test_a_task_runs_only_a_spec_whose_name_is_its_content(lab) -> None:
    study = _study("g")
    cell = study.cells()[0]
    spec = cell_spec(study, cell, run_id(study, "g", cell, CONTENT))
    argv = task_argv(str(lab.root), spec, device="cpu", threads=1)
    assert argv[3] == "grid-cell" and argv[argv.index("--lab") + 1] == str(lab.root)
    text = argv[argv.index("--spec") + 1]
    assert parse_spec(text) == spec
    forged = json.dumps({**json.loads(text), "seed": 7})  # another model under the first one's name
    with pytest.raises(UserError, match="but its content names it"):
        parse_spec(forged)
    with pytest.raises(UserError, match="not JSON"):
        parse_spec("{nope")
