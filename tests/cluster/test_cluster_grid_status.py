"""The console's grid-cells rows: cluster grids' content-named runs and the scheduler's states."""

from __future__ import annotations

import hashlib
import json

import torch

from reuse_console.engine.grids.cells import cell_spec
from reuse_console.engine.grids.cluster_status import ClusterCell, write_cluster_status
from reuse_console.engine.grids.status import grid_status
from reuse_console.engine.grids.study import Source, Study, TrainSettings
from reuse_console.store.checkpoints import CheckpointMeta, write_checkpoint
from reuse_console.store.lab import Lab


def _study() -> Study:
    return Study(
        name="g",
        target="toy",
        sources=[Source("random")],
        subjects=[2],
        seeds=[0, 1, 2],
        train=TrainSettings(arch_config={"base_width": 4}, epochs=2, batch=4, augment=False),
    )


def _by_hand(study: Study, cell) -> str:
    fields = {**cell_spec(study, cell, None).to_dict(), "name": None}
    return "cell-" + hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def test_cluster_grid_cells_are_content_named_with_the_schedulers_states(lab: Lab) -> None:
    study = _study()
    cells = study.cells()
    write_cluster_status(
        lab,
        "g",
        "slurm",
        [
            ClusterCell(cells[0].name, "", "running", node="node-a", job="7_0"),
            ClusterCell(cells[1].name, "", "requeued", node="node-b", job="7_1", tries=2),
            ClusterCell(cells[2].name, "", "running", node="node-c", job="7_2"),
        ],
    )
    # the third cell finished: its last checkpoint is at the content name
    done = _by_hand(study, cells[2])
    meta = CheckpointMeta(arch="unet", arch_config={"base_width": 4}, task="seg", data="toy", epoch=2)
    write_checkpoint(lab.path("checkpoints", f"{done}.last"), {"w": torch.zeros(1)}, meta)
    rows = grid_status(lab, study, "g", grid_running=True)
    assert [r.run for r in rows] == [_by_hand(study, c) for c in cells]
    assert [(r.name, r.state, r.node) for r in rows] == [
        (cells[0].name, "running", "node-a"),
        (cells[1].name, "requeued", "node-b"),
        (cells[2].name, "done", "node-c"),  # the lab says done, whatever the scheduler last said
    ]


def test_local_grid_keeps_experiment_names_and_lab_states(lab: Lab) -> None:
    study = _study()
    rows = grid_status(lab, study, "g", grid_running=True)
    assert [r.run for r in rows] == ["g.random-n2-s0", "g.random-n2-s1", "g.random-n2-s2"]
    assert {(r.state, r.node) for r in rows} == {("queued", "")}


def test_the_jobs_screen_cells_table_shows_requeued_cells_and_their_nodes() -> None:
    from rich.console import Console

    from reuse_console.engine.grids.status import CellStatus
    from reuse_console.tui.widgets.job_view import cells_line, cells_table

    cells = (
        CellStatus("a", "cell-a", "done", 2, 2, 0.8, node="node-a"),
        CellStatus("b", "cell-b", "requeued", 1, 2, node="node-b"),
        CellStatus("c", "cell-c", "running", 0, 2, node="node-c"),
    )
    console = Console(width=80, record=True)
    console.print(cells_table(cells, 10))
    console.print(cells_line(cells))
    text = console.export_text()
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["b"][:2] == ["requeued", "node-b"] and lines["c"][:2] == ["running", "node-c"]
    assert lines["a"][:2] == ["done", "2/2"]  # a finished cell's node is no longer news
    assert "1 running" in text and "1 requeued" in text and "1 done" in text
