"""Training of the two tasks on one architecture: seg (C classes) and ae (C reconstructions).

`train` starts a run, `resume_training` continues one from its last finished epoch. A run named
R writes runs/R.h5 (history, appended live), checkpoints/R.h5 (best epoch) and
checkpoints/R.last.h5 (last epoch, with optimizer state). Every random draw after the model's
initialisation is derived from (seed, epoch, sample), so on CPU a resumed run ends with the
same weights, bit for bit, as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from reuse_console.engine.core.device import DEFAULT_PRECISION
from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.models.adapters import IN_NAMES, OUT_NAMES
from reuse_console.engine.models.registry import checkpoint_path, load_model, rebuild_config
from reuse_console.engine.reuse.transfer import transfer_init
from reuse_console.engine.training.checkpoints import load_optimizer, read_optimizer
from reuse_console.engine.training.session import TrainSession
from reuse_console.engine.training.spec import (
    TASKS,
    TRAIN_DEFAULTS,
    TrainResult,
    TrainSpec,
    claim_run,
    default_name,
    last_name,
)
from reuse_console.store.checkpoints import CheckpointMeta, read_meta
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.lab import Lab
from reuse_console.store.runs import RunWriter, read_run, release_killed_run

__all__ = ["TASKS", "TrainResult", "TrainSpec", "default_name", "resume_training", "train"]


def train(
    lab: Lab,
    spec: TrainSpec,
    *,
    device: str = "auto",
    precision: str = DEFAULT_PRECISION,
    workers: int | None = None,
    report: Reporter = silent,
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train a new run. `init_state` (a partial state dict) overrides the seeded initialisation."""
    spec.check()
    external_init = init_state is not None  # not in the spec: a restart from epoch 0 could not redo it
    if not spec.arch:  # --arch not given: the donor's architecture and options, else the default
        spec = _donor_arch(lab, spec) if spec.init else dataclasses.replace(spec, arch=TRAIN_DEFAULTS.arch)
    if spec.init or spec.plan:
        spec, donor_state = transfer_init(lab, spec)
        init_state = {**(init_state or {}), **donor_state}
    session = TrainSession.open(lab, spec, device=device, precision=precision, workers=workers)
    session.build_model(init_state)  # built and probed before any name is claimed or file written
    name = spec.name or default_name(lab, spec, session.model_class)  # the next name free, claimed at once
    with claim_run(lab, name, new=True):
        spec = dataclasses.replace(spec, name=name)
        session.spec, session.name = spec, name

        writer = RunWriter.create(
            lab.folder("runs", create=True) / f"{name}.h5",
            epoch_columns=session.epoch_columns(),
            meta={**session.run_meta(), **({"init_state": "external"} if external_init else {})},
            provenance=session.provenance(),
        )
        session.save_initial()
        return session.fit(writer, first_epoch=1, global_step=0, best=None, report=report)


def _donor_arch(lab: Lab, spec: TrainSpec) -> TrainSpec:
    """`train --init DONOR` without --arch: build the donor's architecture with its options (and
    adapter); the channel counts are the new data set's, so they are left to the tool."""
    meta = read_meta(checkpoint_path(lab, spec.init or ""))
    keep = {k: v for k, v in rebuild_config(meta.arch_config).items() if k not in (*IN_NAMES, *OUT_NAMES)}
    return dataclasses.replace(spec, arch=meta.arch, arch_config={**keep, **spec.arch_config})


def resume_training(
    lab: Lab,
    run: str,
    *,
    device: str = "auto",
    precision: str | None = None,
    workers: int | None = None,
    report: Reporter = silent,
) -> TrainResult:
    """Continue run `run` after its last finished epoch (model and optimizer from `<run>.last`).

    Only under the run's claim: two resumes of one run (or a resume of a run still training) are
    refused; a killed writer's claim is free (store/claims.py)."""
    with claim_run(lab, run):
        return _resume(lab, run, device=device, precision=precision, workers=workers, report=report)


def _resume(
    lab: Lab, run: str, *, device: str, precision: str | None, workers: int | None, report: Reporter
) -> TrainResult:
    last = lab.path("checkpoints", last_name(run))
    run_path = lab.path("runs", run)
    release_killed_run(run_path)  # a killed writer's file opens in h5ls/h5dump even if this resume fails
    if not last.exists() and run_path.exists():
        return _restart(lab, run, device=device, precision=precision, workers=workers, report=report)
    if not last.exists():
        raise NotFound(f"no checkpoint {last_name(run)!r} in lab {lab.root}: run {run!r} cannot be resumed")
    meta = read_meta(last)
    spec = TrainSpec.from_dict(meta.extra.get("spec", {}))
    if not run_path.exists():
        raise NotFound(f"no run file {run!r} in lab {lab.root}: run {run!r} cannot be resumed")
    if meta.epoch >= spec.epochs:
        return _mark_finished(lab, run, meta, report)
    precision = precision or meta.extra.get("precision", "fp32")
    session = TrainSession.open(lab, spec, device=device, precision=precision, workers=workers)
    model, _ = load_model(lab, last_name(run))
    session.attach(model, meta.arch_config)
    load_optimizer(session.optimizer, read_optimizer(lab, run), meta.extra.get("optimizer_groups", []))
    if session.scaler is not None and meta.extra.get("grad_scaler"):
        session.scaler.load_state_dict(meta.extra["grad_scaler"])
    writer = RunWriter.resume(run_path, keep_epochs=meta.epoch)
    report(Message(f"resuming {run} after epoch {meta.epoch} of {spec.epochs}"))
    best = meta.extra.get("best")
    return session.fit(
        writer, first_epoch=meta.epoch + 1, global_step=int(meta.extra.get("global_step", 0)), best=best, report=report
    )


def _restart(
    lab: Lab, run: str, *, device: str, precision: str | None, workers: int | None, report: Reporter
) -> TrainResult:
    """A run killed before its first epoch's checkpoint: train it again from epoch 0, from the spec in
    its run file (the model is rebuilt as `train` built it, so the result is the same bit for bit)."""
    meta = read_run(lab.path("runs", run)).meta
    if not meta.get("spec"):
        raise UserError(f"run {run!r} has no checkpoint and its run file no spec: it cannot be resumed")
    if meta.get("init_state") == "external":
        raise UserError(
            f"run {run!r} started from tensors given by its caller and has no checkpoint yet: start it again"
        )
    spec, init_state = TrainSpec.from_dict(meta["spec"]), None
    if spec.init or spec.plan:
        spec, init_state = transfer_init(lab, spec)  # idempotent: the stored spec already lists the frozen keys
    session = TrainSession.open(
        lab, spec, device=device, precision=precision or meta.get("precision", "fp32"), workers=workers
    )
    session.build_model(init_state)
    writer = RunWriter.resume(lab.path("runs", run), keep_epochs=0)
    session.name = run
    session.save_initial()
    report(Message(f"resuming {run}: killed before its first epoch ended, training from epoch 1 of {spec.epochs}"))
    return session.fit(writer, first_epoch=1, global_step=0, best=None, report=report)


def _mark_finished(lab: Lab, run: str, meta: CheckpointMeta, report: Reporter) -> TrainResult:
    """All epochs are in the checkpoints: a run killed before it recorded so is marked finished;
    a run that did record it has nothing to resume (UserError)."""
    spec = TrainSpec.from_dict(meta.extra.get("spec", {}))
    if read_run(lab.path("runs", run)).status == "finished":
        raise UserError(f"run {run!r} already finished all {spec.epochs} epochs")
    RunWriter.resume(lab.path("runs", run), keep_epochs=meta.epoch).finish("finished")
    report(Message(f"run {run}: all {spec.epochs} epochs were done before it was interrupted; marked finished"))
    best = meta.extra.get("best") or {"epoch": meta.epoch, "metrics": {}}
    return TrainResult(
        name=run,
        run_path=lab.path("runs", run),
        best_path=lab.path("checkpoints", run),
        last_path=lab.path("checkpoints", last_name(run)),
        epochs=spec.epochs,
        best_epoch=int(best["epoch"]),
        best_metrics=dict(best.get("metrics", {})),
    )
