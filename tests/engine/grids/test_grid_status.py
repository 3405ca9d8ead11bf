"""A grid's cells as the Jobs screen shows them, read from the lab, and study files built by the console."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import tomllib
from toydata import write_toy

from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.status import CellStatus, counts, grid_status
from reuse_console.engine.grids.study import Source, Study, TrainSettings, load_study
from reuse_console.engine.grids.study_toml import SourceRow, parse_seeds, parse_subjects, study_data, write_study
from reuse_console.store.errors import UserError
from reuse_console.store.runs import RunWriter, read_run

TINY = {"base_width": 4}


def _study() -> Study:
    return Study(
        name="g",
        target="toy",
        sources=[Source("random")],
        subjects=[2],
        seeds=[0, 1, 2, 3, 4],
        train=TrainSettings(arch_config=TINY, epochs=1, batch=4, augment=False),
    )


def _dead_writer(path) -> None:
    """A run file whose writer exited without a final status (a killed cell)."""
    code = (
        "import sys; from reuse_console.store.runs import RunWriter, read_run; "
        "RunWriter.create(__import__('pathlib').Path(sys.argv[1]), meta={}, epoch_columns=['train_loss']).close()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def test_cells_of_a_grid_killed_between_cells(lab) -> None:
    """Two cells trained; then one run file left by a dead writer and one being written by a live
    process (this one); the last never started."""
    write_toy(lab)
    study = _study()
    run_grid(lab, dataclasses.replace(study, seeds=[0, 1]), name="g", device="cpu")
    _dead_writer(lab.path("runs", "g.random-n2-s2"))
    writer = RunWriter.create(lab.path("runs", "g.random-n2-s3"), meta={}, epoch_columns=["train_loss"])
    try:
        cells = grid_status(lab, study, "g", grid_running=True)
        assert [c.name for c in cells] == [f"random-n2-s{i}" for i in range(5)]
        assert [c.state for c in cells] == ["done", "done", "queued", "running", "queued"]
        stopped = grid_status(lab, study, "g", grid_running=False)
        assert [c.state for c in stopped] == ["done", "done", "stopped", "running", "queued"]
    finally:
        writer.finish("failed")
    assert grid_status(lab, study, "g", grid_running=False)[3].state == "failed"
    first = cells[0]
    assert first.run == "g.random-n2-s0" and (first.epoch, first.epochs) == (1, 1)
    stored = read_run(lab.path("runs", "g.random-n2-s0")).epochs["val_dice_fg"][-1]
    assert first.dice_fg == pytest.approx(float(stored))


def test_counts_list_every_state() -> None:
    cells = [CellStatus("a", "g.a", "done"), CellStatus("b", "g.b", "failed"), CellStatus("c", "g.c", "done")]
    assert counts(cells) == {"queued": 0, "running": 0, "requeued": 0, "done": 2, "failed": 1, "stopped": 0}


def test_subjects_and_seeds_as_typed() -> None:
    assert parse_subjects("4, 20,all") == [4, 20, "all"]
    assert parse_seeds("3") == 3 and parse_seeds("0,5") == [0, 5]
    for bad in ("", "0", "x", "4,4"):
        with pytest.raises(UserError, match="subjects"):
            parse_subjects(bad)
    for bad in ("", "0", "a", "1,1"):
        with pytest.raises(UserError, match="seeds"):
            parse_seeds(bad)


def _built(**kw):
    base = dict(
        name="mine",
        target="toy",
        sources=[SourceRow("donor", "p"), SourceRow("", ""), SourceRow("donor", "q")],
        random=True,
        modes=["finetune"],
        subjects="2,all",
        seeds="2",
        train={"epochs": 3, "batch": 4, "lr": 0.002, "size": None, "arch": "unet", "arch_config": {"base_width": 4}},
    )
    return study_data(**{**base, **kw})


def test_a_built_study_is_the_toml_a_user_would_write(lab) -> None:
    path = write_study(lab, _built())
    assert path == lab.root / "studies" / "mine.toml"
    by_hand = """
name = "mine"
target = "toy"
subjects = [2, "all"]
seeds = 2
modes = ["finetune"]
[[sources]]
name = "random"
[[sources]]
name = "donor"
donor = "donor"
plan = "p"
[[sources]]
name = "donor+q"
donor = "donor"
plan = "q"
[train]
epochs = 3
batch = 4
lr = 0.002
arch = "unet"
arch_config = { base_width = 4 }
"""
    assert tomllib.loads(path.read_text()) == tomllib.loads(by_hand)
    cells = [c.name for c in load_study(path).cells()]
    assert cells[:3] == ["random-n2-s0", "random-n2-s1", "donor-finetune-n2-s0"]
    assert len(cells) == 2 * (2 + 2 + 2)
    assert write_study(lab, _built()) == path  # the same study again: kept
    with pytest.raises(UserError, match="already exists"):
        write_study(lab, _built(seeds="3"))
    assert tomllib.loads(path.read_text())["seeds"] == 2


def test_a_bad_study_writes_nothing(lab) -> None:
    with pytest.raises(UserError, match="donor and a plan"):
        _built(sources=[SourceRow("donor", "")])
    with pytest.raises(UserError, match="sources"):
        _built(random=False, sources=[])
    with pytest.raises(UserError, match="modes"):
        _built(modes=[])
    with pytest.raises(UserError, match="lr"):
        write_study(lab, _built(train={"lr": -1.0}))
    assert not (lab.root / "studies").exists() or not os.listdir(lab.root / "studies")
