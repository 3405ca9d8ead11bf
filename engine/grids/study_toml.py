"""Writing a study TOML into the lab (`studies/NAME.toml`), for a grid built in the console.

The console's grid form gathers a target, subject counts, seeds, modes and sources; this module
turns them into the same TOML a user would write by hand (examples/study.toml), checks it with
the study parser before anything is written, and stores it where the grid job reads it. The
text parsers here are torch-free so the form can check its fields while the user types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name

STUDIES = "studies"  # a lab subfolder of TOML files (not an object kind: listing ignores it)


@dataclass(frozen=True)
class SourceRow:
    """One donor + plan row of the grid form (random initialisation is a tick box of its own)."""

    donor: str
    plan: str


def parse_subjects(text: str) -> list[int | str]:
    """`4,20,all` -> [4, 20, "all"]: training subject counts of a study."""
    out: list[int | str] = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if part == "all":
            out.append("all")
        elif part.isdigit() and int(part) >= 1:
            out.append(int(part))
        else:
            raise UserError(f"subjects: {part!r} is not a whole number >= 1 or all (e.g. 4,20,all)")
    if not out:
        raise UserError("subjects: give at least one count (e.g. 4,20,all)")
    if len(set(out)) != len(out):
        raise UserError(f"subjects: {text!r} lists a count twice")
    return out


def parse_seeds(text: str) -> int | list[int]:
    """`3` -> 3 seeds (0, 1, 2); `0,5` -> those seeds."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise UserError(f"seeds: {text!r} is not a count (3) or a list of seeds (0,1,5)")
    values = [int(p) for p in parts]
    if len(values) == 1:
        if values[0] < 1:
            raise UserError("seeds: the count must be at least 1")
        return values[0]
    if len(set(values)) != len(values):
        raise UserError(f"seeds: {text!r} lists a seed twice")
    return values


def source_name(donor: str, plan: str, taken: set[str]) -> str:
    """A source's table row name: the donor's id, or donor+plan when that donor is used twice."""
    name = donor if donor not in taken else f"{donor}+{plan}"
    return check_name(name)


def study_data(
    *,
    name: str,
    target: str,
    sources: Sequence[SourceRow],
    random: bool,
    modes: Sequence[str],
    subjects: str,
    seeds: str,
    train: dict[str, Any],
) -> dict[str, Any]:
    """The study as TOML-ready data; raises UserError naming the first bad field (torch-free)."""
    check_name(name)
    if not target:
        raise UserError("target: choose the data set the grid trains on")
    rows: list[dict[str, str]] = [{"name": "random"}] if random else []
    taken = {"random"} if random else set()
    for row in sources:
        if bool(row.donor) != bool(row.plan):
            raise UserError(f"source {row.donor or row.plan}: give both a donor and a plan")
        if row.donor:
            sname = source_name(row.donor, row.plan, taken)
            taken.add(sname)
            rows.append({"name": sname, "donor": row.donor, "plan": row.plan})
    if not rows:
        raise UserError("sources: tick random or choose at least one donor and plan")
    if any("donor" in r for r in rows) and not modes:
        raise UserError("modes: tick freeze, finetune or both")
    table = {k: v for k, v in train.items() if v is not None}
    config = table.get("arch_config")
    if isinstance(config, dict):  # the donors' options (engine/jobs/choices.py), channel counts left out
        # TOML has no null: such a config goes as a JSON string, which the study parser reads too
        table["arch_config"] = json.dumps(config) if any(v is None for v in config.values()) else config
    return {
        "name": name,
        "target": target,
        "subjects": parse_subjects(subjects),
        "seeds": parse_seeds(seeds),
        "modes": list(modes) or ["finetune"],
        "sources": rows,
        "train": table,
    }


def study_path(lab: Lab, name: str) -> Path:
    """Where the console writes study `name` (relative to the working directory when the lab is)."""
    return lab.root / STUDIES / f"{check_name(name)}.toml"


def write_study(lab: Lab, data: dict[str, Any]) -> Path:
    """Check `data` with the study parser, then write it to studies/NAME.toml all-or-nothing.

    An existing file of that name is refused unless it holds the same study (starting the same
    form twice, e.g. after a cancelled grid, is fine)."""
    import tomli_w

    from reuse_console.engine.grids.study import Study
    from reuse_console.store.h5 import atomic_path

    study = Study.from_dict(dict(data), where=f"study {data.get('name')!r}")
    text = tomli_w.dumps(data)
    path = study_path(lab, study.name)
    if path.exists():
        if path.read_text(encoding="utf-8") == text:
            return path
        raise UserError(f"{path} already exists with another study: choose another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path


def lab_studies(lab: Lab) -> list[Path]:
    """The study files written into this lab, by name."""
    folder = lab.root / STUDIES
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []
