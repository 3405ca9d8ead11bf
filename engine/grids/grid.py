"""Transfer grids: train every cell of a study, evaluate it, and store the experiment.

Each cell is an ordinary training run named `<experiment>.<cell>` (runs/ and checkpoints/), so
a killed grid keeps every finished cell; `resume` skips those, continues a cell killed after an
epoch from its last checkpoint, and restarts one killed in its first epoch. The experiment file
is rewritten (atomically) after every cell, so the console can show a grid while it runs.

Cells run one after another on one device, or concurrently as one worker process per device
(`devices`, e.g. ["cuda:0", "cuda:1"]; engine/grids/workers.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reuse_console.engine.compare.rmse import compare_states
from reuse_console.engine.core.device import pick_device
from reuse_console.engine.core.events import CellDone, Finished, Message, Reporter, Started, silent
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.grids.cells import (
    DONE,
    cell_id,
    cell_spec,
    cell_state,
    evaluate_cell,
    evaluated_checkpoint,
    finish_record,
    forward_events,
    run_id,
    train_spec,
)
from reuse_console.engine.grids.experiment import CellRecord, Experiment, read_experiment, write_experiment
from reuse_console.engine.grids.naming import EXPERIMENT, check_naming
from reuse_console.engine.grids.study import Cell, Study, TrainSettings
from reuse_console.engine.grids.workers import run_parallel
from reuse_console.engine.models.layers import KINDS, LayerIndex
from reuse_console.engine.models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config
from reuse_console.engine.reuse.plans import load_plan
from reuse_console.engine.training.spec import TrainSpec, last_name
from reuse_console.store.checkpoints import read_checkpoint, read_meta
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name

# A grid's cells run elsewhere (engine/jobs/executors*.py: SLURM, Ray): the runner gets the cells
# to train as (index, cell name, spec), calls `done(index)` as each one's run is finished (the grid
# then evaluates and records it), and raises UserError at the end if some failed.
CellRunner = Callable[[list[tuple[int, str, TrainSpec]], Callable[[int], None], Reporter], None]

if TYPE_CHECKING:  # imported where they are used: a grid loads data and models only once it runs
    from reuse_console.engine.data.slices import SliceSet
    from reuse_console.engine.models.layers import LayerIndex


def parse_devices(spec: str | None) -> list[str]:
    """`--devices`: "all" (every visible CUDA device) or a comma list such as "cuda:0,cuda:1"."""
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


def same_study(stored: dict[str, Any], study: Study) -> bool:
    """Whether an experiment file's study is `study`; [train] fields it lacks (written before they
    existed, e.g. `input`) count as their defaults, so such an experiment still resumes."""
    train = {**dataclasses.asdict(TrainSettings()), **stored.get("train", {})}
    return {**stored, "train": train} == study.to_dict()


def check_inputs(lab: Lab, study: Study, experiment: str, naming: str = EXPERIMENT) -> SliceSet:
    """Every data set, donor, plan and reference the study names exists and fits; the target slices."""
    slices = load_slices(lab, study.target)
    if not slices.subjects_in("val"):
        raise UserError(f"data set {study.target!r} has no validation subjects to evaluate the grid on")
    arch = study.train.arch
    for source in study.sources:
        if source.plan is not None and source.donor is None:  # control reinit: a plan, no donor
            plan = load_plan(lab, source.plan)
            if plan.arch and plan.arch != arch:
                raise UserError(
                    f"source {source.name!r}: plan {source.plan!r} was made for {plan.arch}, the study trains {arch}"
                )
            continue
        if source.donor is None or source.plan is None:  # random init (a study gives both or neither)
            continue
        meta = read_meta(checkpoint_path(lab, source.donor))
        if source.control == "selffer" and (meta.task != "seg" or meta.data != study.target):
            raise UserError(
                f"source {source.name!r}: a selffer donor is a seg model trained on the target {study.target!r}; "
                f"{source.donor!r} is a {meta.task} model of {meta.data!r}"
            )
        if meta.arch != arch:
            raise UserError(
                f"source {source.name!r}: donor {source.donor!r} is a {meta.arch}, the study trains {arch} "
                f'(set arch = "{meta.arch}" and its arch_config in [train])'
            )
        plan = load_plan(lab, source.plan)
        if plan.arch and plan.arch != arch:
            raise UserError(
                f"source {source.name!r}: plan {source.plan!r} was made for {plan.arch}, the study trains {arch}"
            )
    if study.reference:
        meta = read_meta(checkpoint_path(lab, study.reference))
        if meta.arch != arch:
            raise UserError(f"reference {study.reference!r} is a {meta.arch}, the study trains {arch}")
    for cell in study.cells():
        check_name(last_name(run_id(study, experiment, cell, naming)))
    return slices


def reference_rmse(
    lab: Lab, study: Study, experiment: str, cells: Sequence[Cell], naming: str = EXPERIMENT
) -> tuple[LayerIndex, np.ndarray]:
    """RMSE per layer and kind of every cell's evaluated model against the reference: (layers, (N, L, K))."""
    reference = study.reference
    if reference is None:
        raise ValueError("the study names no reference checkpoint")
    ref_state, meta = read_checkpoint(checkpoint_path(lab, reference))
    index = LayerIndex.from_model(
        build_model(meta.arch, rebuild_config(meta.arch_config), trusted=False), model_in_channels(meta.arch_config)
    )
    values = np.full((len(cells), len(index.layers), len(KINDS)), np.nan)
    for i, cell in enumerate(cells):
        ref = evaluated_checkpoint(study, experiment, cell, naming)
        if not lab.path("checkpoints", ref).exists():
            continue
        state, _ = read_checkpoint(lab.path("checkpoints", ref))
        comp = compare_states([ref_state, state], index.layers, KINDS, [reference, ref])
        values[i] = comp.rmse[0]
    return index, values


def run_grid(
    lab: Lab,
    study: Study,
    *,
    name: str | None = None,
    resume: bool = False,
    device: str = "auto",
    devices: Sequence[str] = (),
    precision: str = "fp32",
    workers: int | None = None,
    report: Reporter = silent,
    naming: str | None = None,
    runner: CellRunner | None = None,
) -> Experiment:
    """Train and evaluate every cell of `study` and store experiments/<name>.h5.

    Only under the experiment's claim (store/claims.py): a second grid of the same name, or a
    second --resume, is refused while one runs; a killed grid's claim is free. Its cells are
    claimed as runs by whichever process trains them. `naming` (engine/grids/naming.py): how the
    cells' runs are named, default the stored experiment's, else by experiment; `runner`: train
    the cells elsewhere (a cluster executor) instead of in this process or its workers."""
    name = check_name(name or study.name)
    with lab.claim("experiments", name):
        return _run_grid(
            lab,
            study,
            name,
            resume=resume,
            device=device,
            devices=devices,
            precision=precision,
            workers=workers,
            report=report,
            naming=naming,
            runner=runner,
        )


def _run_grid(
    lab: Lab,
    study: Study,
    name: str,
    *,
    resume: bool,
    device: str,
    devices: Sequence[str],
    precision: str,
    workers: int | None,
    report: Reporter,
    naming: str | None,
    runner: CellRunner | None,
) -> Experiment:
    start = time.perf_counter()
    exp_path = lab.path("experiments", name)
    cells = study.cells()
    stored_naming = None
    if not resume:
        taken = [i for c in cells for i in [cell_id(name, c)] if lab.exists("runs", i) or lab.exists("checkpoints", i)]
        if exp_path.exists() or taken:
            raise UserError(
                f"experiment {name!r} already exists in {lab.root}: add --resume to finish it, or use another --name"
            )
    elif exp_path.exists():
        stored_exp = read_experiment(exp_path)
        if stored_exp.study and not same_study(stored_exp.study, study):
            raise UserError(f"experiment {name!r} was started from a different study; use another --name")
        stored_naming = stored_exp.naming
    naming = check_naming(stored_naming or naming or EXPERIMENT)
    ids = [run_id(study, name, c, naming) for c in cells]
    slices = check_inputs(lab, study, name, naming)
    classes, present = list(slices.classes), list(slices.present)
    subjects = [slices.subjects[s] for s in slices.subjects_in("val")]
    blank = np.full((len(subjects), len(classes)), np.nan)
    random = next((s.name for s in study.sources if s.random), None)
    exp = Experiment(
        name,
        study.target,
        classes,
        present,
        subjects,
        [
            CellRecord(
                c.name,
                c.source.name,
                c.mode,
                c.subjects,
                c.seed,
                evaluated_checkpoint(study, name, c, naming),
                blank.copy(),
            )
            for c in cells
        ],
        study=study.to_dict(),
        status="running",
        random_source=random,
        reference=study.reference,
        naming=naming,
    )
    states = [cell_state(lab, i, study.train.epochs) for i in ids]
    to_train = [k for k, s in enumerate(states) if s != DONE]
    report(
        Started(
            what=f"grid {name}",
            total=len(cells),
            unit="cells",
            info={
                "experiment": name,
                "cells": len(cells),
                "to_train": len(to_train),
                "devices": list(devices) or [device],
            },
        )
    )
    first = devices[0] if devices else device
    finished = 0

    def evaluate(k: int) -> np.ndarray:
        return evaluate_cell(lab, study, name, cells[k], classes, device=first, precision=precision, naming=naming)

    def record(k: int, dice: np.ndarray) -> None:
        nonlocal finished
        finished += 1
        exp.cells[k].dice = dice
        mean = np.nanmean(dice, axis=0) if dice.size else np.full(len(classes), np.nan)
        report(
            CellDone(
                index=finished,
                total=len(cells),
                cell=cells[k].name,
                dice={c: float(v) for c, v, p in zip(classes, mean, present) if p},
            )
        )
        write_experiment(exp_path, exp)

    for k, s in enumerate(states):
        if s == DONE:
            report(Message(f"cell {cells[k].name} was trained before: kept"))
            finish_record(lab, ids[k], report)
            record(k, evaluate(k))
    if runner is not None:
        write_experiment(exp_path, exp)  # the console shows the grid (and its naming) while the cluster works
        todo = [(k, cells[k].name, cell_spec(study, cells[k], ids[k])) for k in to_train]
        runner(todo, lambda k: record(k, evaluate(k)), report)
    elif len(devices) > 1 and len(to_train) > 1:
        run_parallel(lab, study, name, cells, to_train, devices, precision, workers, classes, record, report, naming)
    else:
        for n, k in enumerate(to_train, start=1):
            report(Message(f"cell {cells[k].name} ({n}/{len(to_train)} to train) on {first}"))
            spec = cell_spec(study, cells[k], ids[k])
            train_spec(lab, spec, device=first, precision=precision, workers=workers, report=forward_events(report))
            record(k, evaluate(k))
    if study.reference:
        report(Message(f"RMSE of every cell against {study.reference}"))
        index, exp.rmse = reference_rmse(lab, study, name, cells, naming)
        exp.rmse_layers = [layer.name for layer in index.layers]
        exp.rmse_index = [layer.index for layer in index.layers]

        exp.rmse_kinds = list(KINDS)
    exp.status = "complete"
    write_experiment(exp_path, exp)
    report(Finished(what="grid", result=name, seconds=time.perf_counter() - start))
    return exp
