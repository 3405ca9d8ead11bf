"""Transfer grids: train every cell of a study, evaluate it, and store the experiment.

Each cell is an ordinary training run named `<experiment>.<cell>` (runs/ and checkpoints/), so
a killed grid keeps every finished cell; `resume` skips those, continues a cell killed after an
epoch from its last checkpoint, and restarts one killed in its first epoch. The experiment file
is rewritten (atomically) after every cell, so the console can show a grid while it runs.

Cells run one after another on one device, or concurrently as one worker process per device
(`devices`, e.g. ["cuda:0", "cuda:1"]; engine/grid_workers.py).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from reuse_console.store.errors import UserError
from reuse_console.store.lab import check_name

from .events import CellDone, EpochEnd, Event, Finished, Message, Reporter, Started, silent
from .experiment import CellRecord, Experiment, read_experiment, write_experiment
from .study import Cell, Study

DONE, PARTIAL, STALE, NEW = "done", "partial", "stale", "new"


def cell_id(experiment: str, cell: Cell) -> str:
    """The run and checkpoint id of a cell: `<experiment>.<cell>`."""
    return f"{experiment}.{cell.name}"


def parse_devices(spec: str | None) -> list[str]:
    """`--devices`: "all" (every visible CUDA device) or a comma list such as "cuda:0,cuda:1"."""
    from .device import pick_device

    text = (spec or "").strip()
    if not text:
        return []
    if text.lower() == "all":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError("--devices all: no CUDA device is visible here (run without --devices to use one device)")
        return [f"cuda:{i}" for i in range(count)]
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise UserError(f"bad --devices {spec!r}: empty item between commas")
        pick_device(part)  # validates (UserError when it does not exist)
        out.append(part)
    return out


def cell_state(lab: Any, cid: str, epochs: int) -> str:
    """done (all epochs trained), partial (resumable), stale (killed before its first epoch) or new."""
    from reuse_console.store.checkpoints import read_meta

    from .checkpointing import last_name

    last = lab.path("checkpoints", last_name(cid))
    if last.exists():
        return DONE if read_meta(last).epoch >= epochs else PARTIAL
    if lab.path("runs", cid).exists() or lab.path("checkpoints", cid).exists():
        return STALE
    return NEW


def cell_spec(study: Study, cell: Cell, cid: str) -> Any:
    from .train import TrainSpec

    s = study.train
    donor = cell.source.donor
    return TrainSpec(data=study.target, arch=s.arch, arch_config=dict(s.arch_config), task="seg",
                     subjects=cell.subjects, epochs=s.epochs, batch=s.batch, lr=s.lr, seed=cell.seed, name=cid,
                     size=s.size, augment=s.augment, init=donor, plan=cell.source.plan if donor else None,
                     mode=cell.mode if donor else None)


def _forward_events(report: Reporter) -> Reporter:
    """A cell's training reports epochs and messages to the grid; its own bar stays out."""

    def inner(event: Event) -> None:
        if isinstance(event, (EpochEnd, Message)):
            report(event)

    return inner


def train_cell(lab: Any, study: Study, experiment: str, cell: Cell, *, device: str = "auto",
               precision: str = "fp32", workers: int | None = None, report: Reporter = silent) -> str:
    """Train (or finish) one cell; returns what was done: kept (nothing to do), resumed or trained."""
    from .train import resume_training, train

    cid = cell_id(experiment, cell)
    state = cell_state(lab, cid, study.train.epochs)
    if state == DONE:
        return "kept"
    if state == PARTIAL:
        resume_training(lab, cid, device=device, precision=precision, workers=workers, report=report)
        return "resumed"
    if state == STALE:  # killed before its first checkpoint: nothing to keep
        for kind in ("runs", "checkpoints"):
            lab.path(kind, cid).unlink(missing_ok=True)
    train(lab, cell_spec(study, cell, cid), device=device, precision=precision, workers=workers, report=report)
    return "trained"


def finish_record(lab: Any, cid: str, report: Reporter = silent) -> None:
    """A cell killed after its last checkpoint but before its run file said so: mark it finished."""
    from reuse_console.store.runs import read_run

    from .train import resume_training

    path = lab.path("runs", cid)
    if path.exists() and read_run(path).status != "finished":
        resume_training(lab, cid, device="cpu", report=_forward_events(report))


def evaluated_checkpoint(study: Study, experiment: str, cell: Cell) -> str:
    from .checkpointing import last_name

    cid = cell_id(experiment, cell)
    return last_name(cid) if study.evaluate == "last" else cid


def evaluate_cell(lab: Any, study: Study, experiment: str, cell: Cell, classes: Sequence[str], *,
                  device: str = "auto", precision: str = "fp32") -> np.ndarray:
    """Dice (S, C) of the cell's model on the target's validation subjects (NaN for absent classes)."""
    from .evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(lab, evaluated_checkpoint(study, experiment, cell), data=study.target,
                                 device=device, precision=precision)
    rows = [[np.nan if v is None else float(v) for v in (per.get(c) for c in classes)]
            for per in result["per_subject"].values()]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(classes))


def check_inputs(lab: Any, study: Study, experiment: str) -> Any:
    """Every data set, donor, plan and reference the study names exists and fits; the target slices."""
    from reuse_console.store.checkpoints import read_meta

    from .checkpointing import last_name
    from .data.slices import load_slices
    from .models.registry import checkpoint_path
    from .reuse import load_plan

    slices = load_slices(lab, study.target)
    if not slices.subjects_in("val"):
        raise UserError(f"data set {study.target!r} has no validation subjects to evaluate the grid on")
    arch = study.train.arch
    for source in study.sources:
        if source.random:
            continue
        meta = read_meta(checkpoint_path(lab, source.donor))
        if meta.arch != arch:
            raise UserError(f"source {source.name!r}: donor {source.donor!r} is a {meta.arch}, the study trains {arch}")
        plan = load_plan(lab, source.plan)
        if plan.arch and plan.arch != arch:
            raise UserError(f"source {source.name!r}: plan {source.plan!r} was made for {plan.arch}, the study trains {arch}")
    if study.reference:
        meta = read_meta(checkpoint_path(lab, study.reference))
        if meta.arch != arch:
            raise UserError(f"reference {study.reference!r} is a {meta.arch}, the study trains {arch}")
    for cell in study.cells():
        check_name(last_name(cell_id(experiment, cell)))
    return slices


def reference_rmse(lab: Any, study: Study, experiment: str, cells: Sequence[Cell]) -> tuple[Any, np.ndarray]:
    """RMSE per layer and kind of every cell's evaluated model against the reference: (layers, (N, L, K))."""
    from reuse_console.store.checkpoints import read_checkpoint

    from .compare import compare_states
    from .layers import KINDS, LayerIndex
    from .models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config

    ref_state, meta = read_checkpoint(checkpoint_path(lab, study.reference))
    index = LayerIndex.from_model(build_model(meta.arch, rebuild_config(meta.arch_config), trusted=False),
                                  model_in_channels(meta.arch_config))
    values = np.full((len(cells), len(index.layers), len(KINDS)), np.nan)
    for i, cell in enumerate(cells):
        ref = evaluated_checkpoint(study, experiment, cell)
        if not lab.path("checkpoints", ref).exists():
            continue
        state, _ = read_checkpoint(lab.path("checkpoints", ref))
        comp = compare_states([ref_state, state], index.layers, KINDS, [study.reference, ref])
        values[i] = comp.rmse[0]
    return index, values


def _holding_experiment(run: Any) -> Any:
    """Run a grid only under its experiment's claim (store/claims.py): a second grid of the same
    name, or a second --resume, is refused while one runs; a killed grid's claim is free. Its
    cells are claimed as runs by whichever process trains them."""

    @functools.wraps(run)
    def held(lab: Any, study: Study, *, name: str | None = None, **kwargs: Any) -> Experiment:
        with lab.claim("experiments", check_name(name or study.name)):
            return run(lab, study, name=name, **kwargs)

    return held


@_holding_experiment
def run_grid(lab: Any, study: Study, *, name: str | None = None, resume: bool = False, device: str = "auto",
             devices: Sequence[str] = (), precision: str = "fp32", workers: int | None = None,
             report: Reporter = silent) -> Experiment:
    """Train and evaluate every cell of `study` and store experiments/<name>.h5."""
    start = time.perf_counter()
    name = check_name(name or study.name)
    exp_path = lab.path("experiments", name)
    cells = study.cells()
    ids = [cell_id(name, c) for c in cells]
    if not resume:
        taken = [i for i in ids if lab.path("runs", i).exists() or lab.path("checkpoints", i).exists()]
        if exp_path.exists() or taken:
            raise UserError(f"experiment {name!r} already exists in {lab.root}: add --resume to finish it, or use another --name")
    elif exp_path.exists():
        stored = read_experiment(exp_path).study
        if stored and stored != study.to_dict():
            raise UserError(f"experiment {name!r} was started from a different study; use another --name")
    slices = check_inputs(lab, study, name)
    classes, present = list(slices.classes), list(slices.present)
    subjects = [slices.subjects[s] for s in slices.subjects_in("val")]
    blank = np.full((len(subjects), len(classes)), np.nan)
    random = next((s.name for s in study.sources if s.random), None)
    exp = Experiment(name, study.target, classes, present, subjects,
                     [CellRecord(c.name, c.source.name, c.mode, c.subjects, c.seed,
                                 evaluated_checkpoint(study, name, c), blank.copy()) for c in cells],
                     study=study.to_dict(), status="running", random_source=random, reference=study.reference)
    states = [cell_state(lab, i, study.train.epochs) for i in ids]
    to_train = [k for k, s in enumerate(states) if s != DONE]
    report(Started(what=f"grid {name}", total=len(cells), unit="cells",
                   info={"experiment": name, "cells": len(cells), "to_train": len(to_train),
                         "devices": list(devices) or [device]}))
    first = devices[0] if devices else device
    finished = 0

    def record(k: int, dice: np.ndarray) -> None:
        nonlocal finished
        finished += 1
        exp.cells[k].dice = dice
        mean = np.nanmean(dice, axis=0) if dice.size else np.full(len(classes), np.nan)
        report(CellDone(index=finished, total=len(cells), cell=cells[k].name,
                        dice={c: float(v) for c, v, p in zip(classes, mean, present) if p}))
        write_experiment(exp_path, exp)

    for k, s in enumerate(states):
        if s == DONE:
            report(Message(f"cell {cells[k].name} was trained before: kept"))
            finish_record(lab, ids[k], report)
            record(k, evaluate_cell(lab, study, name, cells[k], classes, device=first, precision=precision))
    if len(devices) > 1 and len(to_train) > 1:
        from .grid_workers import run_parallel

        run_parallel(lab, study, name, cells, to_train, devices, precision, workers, classes, record, report)
    else:
        for n, k in enumerate(to_train, start=1):
            report(Message(f"cell {cells[k].name} ({n}/{len(to_train)} to train) on {first}"))
            train_cell(lab, study, name, cells[k], device=first, precision=precision, workers=workers,
                       report=_forward_events(report))
            record(k, evaluate_cell(lab, study, name, cells[k], classes, device=first, precision=precision))
    if study.reference:
        report(Message(f"RMSE of every cell against {study.reference}"))
        index, exp.rmse = reference_rmse(lab, study, name, cells)
        exp.rmse_layers = [layer.name for layer in index.layers]
        exp.rmse_index = [layer.index for layer in index.layers]
        from .layers import KINDS

        exp.rmse_kinds = list(KINDS)
    exp.status = "complete"
    write_experiment(exp_path, exp)
    report(Finished(what="grid", result=name, seconds=time.perf_counter() - start))
    return exp
