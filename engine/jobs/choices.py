"""What a job form may offer: the lab's donors and plans, and which of them fit a model.

`train --init DONOR` builds the donor's architecture with its options unless told otherwise, and a
plan names tensors of one architecture; the forms offer only the donors whose architecture and
options fit what the user typed, and only the plans made for the architecture the run will
build. Reads checkpoint metadata: call from a worker thread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from reuse_console.store.h5 import attr_str, open_h5
from reuse_console.store.lab import Lab

SKIPPED_SUFFIXES = (".init", ".last")  # a run's initial and last-epoch checkpoints: offered by the run's own id


@dataclass(frozen=True)
class DonorChoice:
    """A checkpoint a transfer run can start from, with the options `train --init` would build it with."""

    id: str
    arch: str
    options: dict[str, Any] = field(default_factory=dict)  # arch config without channel counts
    task: str = ""
    data: str = ""

    @property
    def note(self) -> str:
        return f"{self.arch} {self.task} {self.data} {options_text(self.options)}".strip()


@dataclass(frozen=True)
class PlanChoice:
    """A reuse plan and the architecture it was made for ('' = any)."""

    id: str
    arch: str
    note: str = ""


def options_text(options: dict[str, Any]) -> str:
    """The options as the form's arch-config field writes them ('' when none)."""
    return json.dumps(options, sort_keys=True) if options else ""


def donor_options(arch_config: dict[str, Any]) -> dict[str, Any]:
    """The options `train --init` builds a donor's architecture with (engine/training/train.py's
    `_donor_arch`): its config for rebuilding, channel counts left to the new data set."""
    from reuse_console.engine.models.adapters import IN_NAMES, OUT_NAMES
    from reuse_console.engine.models.registry import rebuild_config

    return {k: v for k, v in rebuild_config(arch_config).items() if k not in (*IN_NAMES, *OUT_NAMES)}


def read_donors(lab: Lab) -> list[DonorChoice]:
    """Every readable checkpoint of the lab as a donor, but runs' .init and .last copies."""
    from reuse_console.store.checkpoints import read_meta

    out: list[DonorChoice] = []
    for entry in lab.entries("checkpoints"):
        if not entry.ok or entry.id.endswith(SKIPPED_SUFFIXES):
            continue
        try:
            meta = read_meta(entry.path)
        except Exception:  # a damaged file is listed (with its error) by the Lab screen, not offered here
            continue
        out.append(DonorChoice(entry.id, meta.arch, donor_options(meta.arch_config), meta.task, meta.data))
    return out


def read_plans(lab: Lab) -> list[PlanChoice]:
    """Every readable plan of the lab with its architecture and share reused."""
    out: list[PlanChoice] = []
    for entry in lab.entries("plans"):
        if not entry.ok:
            continue
        try:
            with open_h5(entry.path) as f:
                arch = attr_str(f, "arch")
        except Exception:
            continue
        summary = entry.summary
        share = summary.get("tensor_share")
        note = f"{arch} {summary.get('reused', '?')}/{summary.get('tensors', '?')} tensors" + (
            f" ({share:.0%})" if isinstance(share, (int, float)) else ""
        )
        out.append(PlanChoice(entry.id, arch, note))
    return out


def donor_fits(donor: DonorChoice, arch: str, options: dict[str, Any]) -> bool:
    """Whether `donor` fits a run of `arch` ('' = any: the donor's own) with `options` typed: the
    same architecture, and no option the user set differs from the donor's."""
    if arch and donor.arch != arch:
        return False
    return all(donor.options.get(k, v) == v for k, v in options.items())


def plan_fits(plan: PlanChoice, arch: str) -> bool:
    """A plan made for `arch` (or for no one architecture in particular)."""
    return not plan.arch or not arch or plan.arch == arch


def run_arch(arch: str, donor: DonorChoice | None, default: str) -> str:
    """The architecture a `train` run builds: typed, else the donor's, else the default."""
    return arch or (donor.arch if donor else default)
