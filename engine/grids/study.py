"""Study files: a transfer grid written down as TOML (see examples/study.toml).

A study names the target data set, the sources a new model starts from (random
initialisation, or a donor checkpoint with a reuse plan), the transfer modes, the training
subject counts and the seeds, and the training settings shared by every cell. Its cells are
every (subjects, source, mode, seed) combination; a random source has the single mode
"scratch". Cells are ordered subjects, source, mode, then seed, so an interrupted grid has
whole table rows finished first.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from reuse_console.engine.evaluation.metrics import EMPTY_RULES
from reuse_console.engine.models.adapters import INPUTS
from reuse_console.engine.reuse.controls import CONTROLS
from reuse_console.engine.reuse.transfer import MODES
from reuse_console.engine.training.spec import TRAIN_DEFAULTS
from reuse_console.store.errors import UserError
from reuse_console.store.lab import check_name

SCRATCH = "scratch"
EVALUATE = ("last", "best")
MAX_SEEDS = 1000  # a count beyond this is a typo, not a study (each seed is a training run per cell)
# `executor`: where the cells run (engine/jobs/executors.py reads it; not part of what the study trains)
_TOP = {
    "name",
    "target",
    "sources",
    "modes",
    "subjects",
    "seeds",
    "train",
    "reference",
    "evaluate",
    "empty",
    "executor",
}
_SOURCE = {"name", "donor", "plan", "control"}


@dataclass(frozen=True)
class Source:
    """Where a cell's model starts: random initialisation (no donor), a donor with a plan, or a
    control of one (engine/reuse/controls.py: reinit needs a plan only)."""

    name: str
    donor: str | None = None
    plan: str | None = None
    control: str | None = None

    @property
    def random(self) -> bool:
        return self.donor is None and self.plan is None


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    source: Source
    mode: str  # freeze | finetune | scratch
    subjects: int | None  # training subjects; None = all
    seed: int

    @property
    def name(self) -> str:
        n = "all" if self.subjects is None else str(self.subjects)
        head = self.source.name if self.mode == SCRATCH else f"{self.source.name}-{self.mode}"
        return f"{head}-n{n}-s{self.seed}"

    @property
    def row(self) -> tuple[str, str, int | None]:
        """The table row this cell contributes a seed to."""
        return (self.source.name, self.mode, self.subjects)


@dataclass
class TrainSettings:
    """Training settings shared by every cell (as for `reuse-console train`, with its defaults)."""

    arch: str = TRAIN_DEFAULTS.arch
    arch_config: dict[str, Any] = field(default_factory=dict)
    epochs: int = TRAIN_DEFAULTS.epochs
    batch: int = TRAIN_DEFAULTS.batch
    lr: float = TRAIN_DEFAULTS.lr
    size: int | None = TRAIN_DEFAULTS.size
    augment: bool = TRAIN_DEFAULTS.augment
    input: str = TRAIN_DEFAULTS.input  # user models: as-is | repeat (as `train --input`)
    output: str | None = TRAIN_DEFAULTS.output  # dict output: the key read (as `train --output`)
    deep_supervision: bool = TRAIN_DEFAULTS.deep_supervision  # train every head (as `train --deep-supervision`)
    depth: int | None = TRAIN_DEFAULTS.depth  # 3D models: slices per sample (as `train --depth`)
    recalibrate: int | None = TRAIN_DEFAULTS.recalibrate  # donor rows: AdaBN on N batches (`train --recalibrate`)


_TRAIN = {f.name for f in dataclasses.fields(TrainSettings)}


@dataclass
class Study:
    """A transfer grid: what to train, from where, how, and how often."""

    name: str
    target: str
    sources: list[Source]
    modes: list[str] = field(default_factory=lambda: list(MODES))
    subjects: list[int | None] = field(default_factory=lambda: [None])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    train: TrainSettings = field(default_factory=TrainSettings)
    reference: str | None = None
    evaluate: str = "last"
    empty: str = "one"  # the cells' Dice: eval --empty (one: MONAI ignore_empty=False; ignore: True)

    def cells(self) -> list[Cell]:
        out: list[Cell] = []
        for n in self.subjects:
            for source in self.sources:
                for mode in [SCRATCH] if source.random else self.modes:
                    out.extend(Cell(source, mode, n, seed) for seed in self.seeds)
        return out

    def to_dict(self) -> dict[str, Any]:
        """As stored in the experiment; `empty` only when not "one", so experiments written before
        it existed still match their study and resume."""
        out = dataclasses.asdict(self)
        if out["empty"] == "one":
            del out["empty"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "study") -> Study:
        """Validate and build a study from parsed TOML (or `to_dict` output)."""
        return _parse(data, where)


def load_study(path: Path) -> Study:
    """Read a study TOML file; any mistake is one UserError naming the field."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"study file {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}): save the study TOML as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML: {exc}") from exc
    data.setdefault("name", path.stem)
    return _parse(data, str(path))


def _unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise UserError(f"{where}: unknown field {extra[0]!r} (fields: {', '.join(sorted(allowed))})")


def _whole(value: Any) -> bool:
    """An integer, and not a TOML boolean (Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _int_list(value: Any, label: str, where: str, *, allow_all: bool = False) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        if allow_all and (item == "all" or item is None):
            out.append(None)
        elif isinstance(item, int) and not isinstance(item, bool) and item >= (1 if allow_all else 0):
            out.append(item)
        else:
            hint = ' or "all"' if allow_all else ""
            raise UserError(f"{where}: {label} must be whole numbers{hint}, got {item!r}")
    if not out or len(set(out)) != len(out):
        raise UserError(f"{where}: {label} must list distinct values, got {value!r}")
    return out


def _parse(data: dict[str, Any], where: str) -> Study:
    _unknown(data, _TOP, where)
    name = check_name(str(data.get("name", "")) or "study")
    target = data.get("target")
    if not isinstance(target, str) or not target:
        raise UserError(f"{where}: `target` (the data set id to train on) is required")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise UserError(f'{where}: at least one [[sources]] table is required (e.g. name = "random")')
    sources: list[Source] = []
    for i, src in enumerate(raw_sources):
        if not isinstance(src, dict) or not src.get("name"):
            raise UserError(f"{where}: sources[{i}] needs a name")
        _unknown(src, _SOURCE, f"{where}: source {src.get('name')!r}")
        sname = check_name(str(src["name"]))
        donor, plan = src.get("donor"), src.get("plan")
        for label, value in (("donor", donor), ("plan", plan)):
            if value is not None and (not isinstance(value, str) or not value):
                raise UserError(f"{where}: source {sname!r}: {label} must be an id (text), got {value!r}")
        control = src.get("control")
        if control is not None and control not in CONTROLS:
            raise UserError(f"{where}: source {sname!r}: control must be one of {', '.join(CONTROLS)}, got {control!r}")
        if control == "reinit":
            if plan is None or donor is not None:
                raise UserError(
                    f"{where}: source {sname!r}: control reinit takes a plan and no donor "
                    "(the planned tensors keep the new model's own initial values)"
                )
        elif (donor is None) != (plan is None) or (control is not None and donor is None):
            raise UserError(f"{where}: source {sname!r} needs both donor and plan (or neither, for random init)")
        sources.append(Source(sname, donor, plan, control))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: source names must be distinct, got {names}")
    modes = data.get("modes", list(MODES))
    modes = modes if isinstance(modes, list) else [modes]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes or len(set(modes)) != len(modes):
        raise UserError(f"{where}: modes must be distinct values of {', '.join(MODES)}, got {modes!r}")
    subjects = _int_list(data.get("subjects", "all"), "subjects", where, allow_all=True)
    seeds = data.get("seeds", 3)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise UserError(f"{where}: seeds must be a count from 1 to {MAX_SEEDS}, or a list of seeds")
        seeds = list(range(seeds))
    seeds = _int_list(seeds, "seeds", where)
    train = _train(data.get("train", {}), where)
    reference = data.get("reference")
    if reference is not None and (not isinstance(reference, str) or not reference):
        raise UserError(f"{where}: reference must be a checkpoint id")
    evaluate = data.get("evaluate", "last")
    if evaluate not in EVALUATE:
        raise UserError(f"{where}: evaluate must be last (the final epoch) or best (best validation epoch)")
    empty = data.get("empty", "one")
    if empty not in EMPTY_RULES:
        raise UserError(
            f"{where}: empty must be one (MONAI ignore_empty=False) or ignore (ignore_empty=True), got {empty!r}"
        )
    return Study(name, target, sources, list(modes), subjects, seeds, train, reference, evaluate, empty)


def _train(data: Any, where: str) -> TrainSettings:
    if not isinstance(data, dict):
        raise UserError(f"{where}: [train] must be a table")
    _unknown(data, _TRAIN, f"{where} [train]")
    settings = TrainSettings(**data)
    for label in ("epochs", "batch"):
        value = getattr(settings, label)
        if not _whole(value) or value < 1:
            raise UserError(f"{where} [train]: {label} must be a whole number >= 1, got {value!r}")
    lr = settings.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise UserError(f"{where} [train]: lr must be a positive number, got {settings.lr!r}")
    if settings.size is not None and (not _whole(settings.size) or settings.size < 16):
        raise UserError(f"{where} [train]: size must be a whole number >= 16, got {settings.size!r}")
    if not isinstance(settings.arch, str) or not settings.arch:
        raise UserError(f'{where} [train]: arch must be a name such as "unet", got {settings.arch!r}')
    if not isinstance(settings.augment, bool):
        raise UserError(f"{where} [train]: augment must be true or false, got {settings.augment!r}")
    if isinstance(settings.arch_config, str):  # JSON: for values TOML cannot write, such as null
        settings.arch_config = _json_table(settings.arch_config, f"{where} [train]: arch_config")
    if not isinstance(settings.arch_config, dict):
        raise UserError(
            f"{where} [train]: arch_config must be a table such as {{ base_width = 16 }}, or a JSON object "
            """in a string such as '{"weights": null}'"""
        )
    _check_model_io(settings, f"{where} [train]")
    settings.lr = float(settings.lr)
    return settings


def _json_table(text: str, where: str) -> dict[str, Any]:
    """A JSON object given as a TOML string (TOML has no null: torchvision's weights=None needs it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not a JSON object ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise UserError(f"{where}: give a JSON object such as '{{\"weights\": null}}'")
    return value


def _check_model_io(settings: TrainSettings, where: str) -> None:
    """How a user model is fed and read (`train --input/--output/--deep-supervision/--depth`):
    checked here so a typo stops the grid before its first cell, not in every cell's run."""
    if settings.input not in INPUTS:
        choices = " or ".join(f'"{i}"' for i in INPUTS)
        raise UserError(f"{where}: input must be {choices}, got {settings.input!r}")
    if settings.output is not None and (not isinstance(settings.output, str) or not settings.output):
        raise UserError(
            f'{where}: output must be the key of the model\'s dict output (e.g. "out"), got {settings.output!r}'
        )
    if not isinstance(settings.deep_supervision, bool):
        raise UserError(f"{where}: deep_supervision must be true or false, got {settings.deep_supervision!r}")
    if settings.depth is not None and (not _whole(settings.depth) or settings.depth < 1):
        raise UserError(f"{where}: depth must be a whole number of slices >= 1, got {settings.depth!r}")
    if settings.recalibrate is not None and (not _whole(settings.recalibrate) or settings.recalibrate < 1):
        raise UserError(f"{where}: recalibrate must be a whole number of batches >= 1, got {settings.recalibrate!r}")
