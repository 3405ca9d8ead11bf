"""Grid cells: one cell of a study is an ordinary training run, named `<experiment>.<cell>`.

Shared by the grid process (cells on one device, engine/grids/grid.py) and the worker processes
(one per device, engine/grids/workers.py): what state a cell is in, how to train, finish and
evaluate it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reuse_console.engine.core.events import EpochEnd, Event, Message, Reporter, silent
from reuse_console.engine.core.names import init_name
from reuse_console.engine.evaluation.evaluate import evaluate_checkpoint
from reuse_console.engine.grids.naming import CONTENT, EXPERIMENT, content_name
from reuse_console.engine.grids.study import Cell, Study
from reuse_console.engine.training.spec import last_name
from reuse_console.engine.training.train import TrainSpec, resume_training, train
from reuse_console.store.checkpoints import read_meta
from reuse_console.store.lab import Lab
from reuse_console.store.runs import read_run

DONE, PARTIAL, STALE, NEW = "done", "partial", "stale", "new"


def cell_id(experiment: str, cell: Cell) -> str:
    """The run and checkpoint id of a cell: `<experiment>.<cell>`."""
    return f"{experiment}.{cell.name}"


def run_id(study: Study, experiment: str, cell: Cell, naming: str = EXPERIMENT) -> str:
    """The run id of a cell under the grid's naming (engine/grids/naming.py)."""
    if naming == CONTENT:
        return content_name(cell_spec(study, cell, None))
    return cell_id(experiment, cell)


def _started(cid: str) -> tuple[tuple[str, str], ...]:
    """What a run writes before its first epoch ends: its run file, best checkpoint and `.init`."""
    return (("runs", cid), ("checkpoints", cid), ("checkpoints", init_name(cid)))


def cell_state(lab: Lab, cid: str, epochs: int) -> str:
    """done (all epochs trained), partial (resumable), stale (killed before its first epoch) or new."""
    last = lab.path("checkpoints", last_name(cid))
    if last.exists():
        return DONE if read_meta(last).epoch >= epochs else PARTIAL
    if any(lab.path(kind, name).exists() for kind, name in _started(cid)):
        return STALE
    return NEW


def cell_spec(study: Study, cell: Cell, cid: str | None) -> TrainSpec:
    s = study.train
    donor = cell.source.donor
    return TrainSpec(
        data=study.target,
        arch=s.arch,
        arch_config=dict(s.arch_config),
        task="seg",
        subjects=cell.subjects,
        epochs=s.epochs,
        batch=s.batch,
        lr=s.lr,
        seed=cell.seed,
        name=cid,
        size=s.size,
        augment=s.augment,
        init=donor,
        plan=cell.source.plan,
        mode=None if cell.source.random else cell.mode,
        control=cell.source.control,
        input=s.input,
        output=s.output,
        deep_supervision=s.deep_supervision,
        depth=s.depth,
        recalibrate=s.recalibrate if donor else None,  # rows without a donor have no donor statistics to fit
    )


def forward_events(report: Reporter) -> Reporter:
    """A cell's training reports epochs and messages to the grid; its own bar stays out."""

    def inner(event: Event) -> None:
        if isinstance(event, (EpochEnd, Message)):
            report(event)

    return inner


def train_spec(
    lab: Lab,
    spec: TrainSpec,
    *,
    device: str = "auto",
    precision: str = "fp32",
    workers: int | None = None,
    report: Reporter = silent,
) -> str:
    """Bring run `spec.name` to its last epoch: kept (done), resumed (from its last epoch) or trained.
    The one way a cell is trained: by the grid process and its workers (`cell_spec` of a study's
    cell) and by a cluster task (engine/grids/remote.py, under the cell's lease)."""
    cid = spec.name
    if not cid:
        raise ValueError("a cell's spec names its run")
    state = cell_state(lab, cid, spec.epochs)
    if state == DONE:
        return "kept"
    if state == PARTIAL:
        resume_training(lab, cid, device=device, precision=precision, workers=workers, report=report)
        return "resumed"
    if state == STALE:  # killed before its first checkpoint: nothing to keep
        for kind, name in _started(cid):
            lab.path(kind, name).unlink(missing_ok=True)
    train(lab, spec, device=device, precision=precision, workers=workers, report=report)
    return "trained"


def finish_record(lab: Lab, cid: str, report: Reporter = silent) -> None:
    """A cell killed after its last checkpoint but before its run file said so: mark it finished."""
    path = lab.path("runs", cid)
    if path.exists() and read_run(path).status != "finished":
        resume_training(lab, cid, device="cpu", report=forward_events(report))


def evaluated_checkpoint(study: Study, experiment: str, cell: Cell, naming: str = EXPERIMENT) -> str:
    cid = run_id(study, experiment, cell, naming)
    return last_name(cid) if study.evaluate == "last" else cid


def evaluate_cell(
    lab: Lab,
    study: Study,
    experiment: str,
    cell: Cell,
    classes: Sequence[str],
    *,
    device: str = "auto",
    precision: str = "fp32",
    naming: str = EXPERIMENT,
) -> np.ndarray:
    """Dice (S, C) of the cell's model on the target's validation subjects (NaN for absent classes)."""
    result = evaluate_checkpoint(
        lab,
        evaluated_checkpoint(study, experiment, cell, naming),
        data=study.target,
        device=device,
        precision=precision,
        empty=study.empty,
    )
    rows = [
        [np.nan if v is None else float(v) for v in (per.get(c) for c in classes)]
        for per in result["per_subject"].values()
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(classes))
