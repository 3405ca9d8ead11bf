"""A scan's name, and what an unfinished scan of that name had finished (to resume it).

A scan is named by the user or after its models; its progress file (scan_store.py) marks it
unfinished. Resuming checks that the scan is started the same way (options and planned variants)
before any of its finished variants is trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.swaps.scan_store import progress_path, read_scan
from reuse_console.engine.swaps.variants import Variant
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name


def stem(ref: str) -> str:
    name = Path(ref).name
    return name[:-3] if name.endswith(".h5") else name


def choose_name(lab: Lab, name: str | None, base: str, resume: bool) -> str:
    """The scan's id: a new one, or (with `resume`) the one whose progress file exists."""
    if name is not None:
        check_name(name)
        if resume:
            if lab.exists("scans", name):
                raise UserError(f"scan {name!r} is already finished: nothing to resume")
            if not progress_path(lab, name).exists():
                raise UserError(f"no unfinished scan {name!r} to resume (start it without --resume)")
            return name
        if progress_path(lab, name).exists():
            raise UserError(
                f"an unfinished scan {name!r} exists: add --resume to continue it, or choose another --name"
            )
        lab.ensure_new("scans", name)
        return name
    base = "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in base)[:90] or "scan"
    if resume:
        if progress_path(lab, base).exists():
            return base
        if lab.exists("scans", base):
            raise UserError(f"scan {base!r} is already finished: nothing to resume (drop --resume to start another)")
        raise UserError(f"no unfinished scan {base!r} to resume (give its --name)")
    # the next free name (no unfinished scan of that name either), claimed: one another job claims meanwhile is skipped
    return lab.unique_name("scans", base, free=lambda candidate: not progress_path(lab, candidate).exists())


@dataclass
class Known:
    """What an unfinished scan had finished: raw and (with --recalibrate) recalibrated Dice."""

    baseline: np.ndarray | None = None
    done: dict[str, np.ndarray] = field(default_factory=dict)
    recalibrated_baseline: np.ndarray | None = None
    recalibrated: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def finished_dice(variants: list[Variant], dice: np.ndarray | None) -> dict[str, np.ndarray]:
    """The evaluated variants' Dice: rows not all NaN (under --empty ignore some cells are NaN)."""
    if dice is None:
        return {}
    return {v.id: d for v, d in zip(variants, dice) if not np.isnan(d).all()}


def resume_state(path: Path, options: dict[str, Any], variants: list[Variant]) -> Known:
    """Finished variants of an unfinished scan, after checking it was started the same way."""
    old = read_scan(path)
    for key in dict.fromkeys([*options, *old.options]):  # an option only one of them has differs too
        value = options.get(key)
        if old.options.get(key) != value:
            raise UserError(
                f"the unfinished scan was started with {key}={old.options.get(key)!r}, not {value!r}: "
                "repeat its options to resume, or start another with --name"
            )
    if [v.id for v in old.variants] != [v.id for v in variants]:
        raise UserError("the unfinished scan planned other variants: start another with --name")
    recal_base = old.recalibrated_baseline
    if recal_base is not None and np.isnan(recal_base).any():
        recal_base = None
    return Known(
        old.baseline,
        finished_dice(old.variants, old.dice),
        recal_base,
        finished_dice(old.variants, old.recalibrated),
        old.seconds,
    )
