"""Which form a job key opens, and the lab objects each form offers (read in a worker thread).

`read_choices` lists the lab (file I/O, checkpoint metadata) and `make_form` builds the form on
the UI thread from what it read; with `preset` (a job's argv) the form starts from that job's
settings, for restarting it with edits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reuse_console.store.lab import Lab

from .compare_forms import AlignForm, CkaForm
from .grid_form import GridForm
from .job_forms import JobForm, Options, ScanForm
from .pick import entry_choices, suggest_pair
from .train_form import TrainForm

FORM_COMMANDS = ("train", "scan", "grid", "align", "cka")
EXAMPLES = Path("examples")  # study files beside the working directory (the repository's examples/)


def study_files(lab: Lab) -> Options:
    """Study TOML files to offer: the lab's studies/ first, then ./examples/."""
    from reuse_console.engine.grids.study_toml import lab_studies

    found = lab_studies(lab) + (sorted(EXAMPLES.glob("*.toml")) if EXAMPLES.is_dir() else [])
    return [(str(p), "in the lab" if p.parent.parent == lab.root else "example") for p in found]


def read_choices(lab: Lab, command: str) -> dict[str, Any]:
    """What the `command` form offers, read from the lab (call from a worker thread)."""
    from reuse_console.engine.jobs.choices import read_donors, read_plans

    out: dict[str, Any] = {"datasets": entry_choices(lab.entries("datasets"))}
    if command in ("scan", "align", "cka"):
        out["checkpoints"] = entry_choices(lab.entries("checkpoints"))
        out["pair"] = suggest_pair(lab)
    if command in ("train", "grid"):
        out["donors"] = read_donors(lab)
        out["plans"] = read_plans(lab)
    if command == "grid":
        out["studies"] = study_files(lab)
    return out


def make_form(command: str, choices: dict[str, Any], lab: Lab, preset: list[str] | None = None) -> JobForm:
    """The form for `command` (one of FORM_COMMANDS) with the lab's `choices`."""
    datasets = choices["datasets"]
    recipient, donor = choices.get("pair") or (None, None)
    if command == "train":
        return TrainForm(datasets, choices["donors"], choices["plans"], preset)
    if command == "scan":
        return ScanForm(choices["checkpoints"], datasets, recipient, donor, preset)
    if command == "grid":
        plans = [(p.id, p.note) for p in choices["plans"]]
        return GridForm(lab, datasets, choices["donors"], plans, choices["studies"], preset)
    if command == "align":
        return AlignForm(choices["checkpoints"], datasets, recipient, donor, preset)
    if command == "cka":
        return CkaForm(datasets, " ".join(x for x in (recipient, donor) if x), preset)
    raise ValueError(f"no form for {command!r}")
