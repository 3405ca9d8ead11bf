"""What defines a training run (`TrainSpec`), what it produced (`TrainResult`), and its name.

The spec is stored in the run file and in every checkpoint of the run, so `--resume` and the
console can rebuild the run from the lab alone. Its field defaults are the training defaults:
`train`'s options, a study's [train] table and the console's training form read them from
`TRAIN_DEFAULTS`, so a default is changed here and nowhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reuse_console.engine.core.names import init_name
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

TASKS = ("seg", "ae")
# `input` values: engine/models/adapters.py's INPUTS (a test keeps them equal), here without torch
# so the console's training form can offer them without loading it
INPUTS = ("as-is", "repeat")


@dataclass
class TrainSpec:
    """What defines a run (stored in its files; `--resume` reads it back)."""

    data: str
    arch: str = "unet"
    arch_config: dict[str, Any] = field(default_factory=dict)  # overrides of the arch defaults
    task: str = "seg"
    subjects: int | None = None  # training subjects picked by seed; None = all
    epochs: int = 10
    batch: int = 16
    lr: float = 1e-3
    seed: int = 0
    name: str | None = None
    size: int | None = None  # resample slices to size x size; None = the data set's size
    augment: bool = True
    frozen: list[str] = field(default_factory=list)  # state-dict keys kept at their initial values
    init: str | None = None  # transfer: donor checkpoint whose `plan` tensors start the model
    plan: str | None = None  # transfer: reuse plan id (engine/reuse/plans.py)
    mode: str | None = None  # transfer: freeze | finetune (engine/reuse/transfer.py)
    input: str = "as-is"  # user models: as-is | repeat (the MRI channel repeated; engine/models/adapters.py)
    output: str | None = None  # user models returning a dict: the key read (default "out")
    deep_supervision: bool = False  # user models with several heads: train on all of them, weighted
    depth: int | None = None  # 3D models: slices per sample (engine/data/volumes.py); None = whole volumes
    recalibrate: int | None = None  # transfer: re-estimate the donor's norm statistics on N batches first (AdaBN)
    control: str | None = (
        None  # transfer controls: reinit | meanvar | meanvar-channel | selffer (engine/reuse/controls.py)
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check(self) -> None:
        if self.task not in TASKS:
            raise UserError(f"unknown task {self.task!r}: use seg or ae")
        for label, value in (("--epochs", self.epochs), ("--batch", self.batch)):
            if value < 1:
                raise UserError(f"{label} must be at least 1 (got {value})")
        if self.recalibrate is not None and self.recalibrate < 1:
            raise UserError(f"--recalibrate must be a number of batches >= 1 (got {self.recalibrate})")
        if self.recalibrate and not (self.init or self.plan):
            raise UserError("--recalibrate re-estimates a donor's norm statistics: it goes with --init and --plan")
        if self.depth is not None and self.depth < 1:
            raise UserError(f"--depth must be at least 1 slice (got {self.depth})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number (got {self.lr})")


TRAIN_DEFAULTS = TrainSpec(data="")  # read, never changed: the defaults every front end shows


def default_workers(device_type: str) -> int:
    """Data loader processes when --workers is not given: augmentation off the main process on
    CUDA (the GPU would wait for it), none on CPU (they would take the cores training uses)."""
    return 4 if device_type == "cuda" else 0


@dataclass
class TrainResult:
    """Where a finished run put its files, and its best epoch."""

    name: str
    run_path: Path
    best_path: Path
    last_path: Path
    epochs: int
    best_epoch: int
    best_metrics: dict[str, Any]


def default_name(lab: Lab, spec: TrainSpec, model_class: str | None = None) -> str:
    """e.g. unet-seg-acdc, or unet-seg-acdc-2 when that is taken (by a run or a checkpoint, or
    claimed by a run another job is starting); claimed for this run (`Lab.unique_name`). A user
    model is named by its class (`Unet-seg-acdc` for smp's Unet, `LRASPP-seg-acdc` for a factory)."""
    arch = model_class or spec.arch.rsplit(":", 1)[-1].lower()
    base = f"{arch}-{spec.task}-{spec.data.split('/')[-1]}"
    return lab.unique_name("runs", base, free=lambda name: not lab.exists("checkpoints", name))


LAST_SUFFIX = ".last"


def last_name(run: str) -> str:
    """The id of a run's last-epoch checkpoint (`<run>.last`, resumable; `<run>` is the best epoch)."""
    return f"{run}{LAST_SUFFIX}"


def claim_run(lab: Lab, name: str, *, new: bool = False) -> contextlib.ExitStack:
    """Hold every name run `name` writes (runs/R, checkpoints/R, checkpoints/R.last) for the
    whole training, so a second `train --name R` or `train --resume R` is refused while it runs.
    `new`: none of them may exist yet (checked after claiming, so two starts cannot both pass)."""
    stack = contextlib.ExitStack()
    hint = f"use --resume {name} to continue it, or another --name"
    try:
        names = (
            ("runs", name),
            ("checkpoints", name),
            ("checkpoints", last_name(name)),
            ("checkpoints", init_name(name)),
        )
        for kind, obj in names:
            stack.enter_context(lab.claim(kind, obj, new=new, hint=hint))
    except BaseException:
        stack.close()
        raise
    return stack
