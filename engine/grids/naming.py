"""How a grid names its cells' runs: by experiment (`<experiment>.<cell>`) or by content (`cell-<hash>`).

Local grids keep the readable `<experiment>.<cell>` names. Grids run on a cluster (SLURM, Ray)
name each cell by a hash of what it trains: the cell's TrainSpec without its name. So a grid
submitted again never trains a finished cell twice, two grids that share a cell (same data,
model, donor, plan, mode, subjects, seed and settings) share its run, and a task rebuilt from
the spec on another node lands on the same name. The experiment file records which naming it
uses, so a grid resumed with another executor keeps its names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from reuse_console.engine.training.spec import TrainSpec
from reuse_console.store.errors import UserError

EXPERIMENT, CONTENT = "experiment", "content"
NAMINGS = (EXPERIMENT, CONTENT)
PREFIX = "cell-"
KEY_LENGTH = 16  # hex digits: 64 bits, no collision expected below billions of cells


def spec_key(spec: TrainSpec) -> str:
    """A stable hash of everything that defines the trained model (the spec without its name)."""
    data = dataclasses.replace(spec, name=None).to_dict()
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def content_name(spec: TrainSpec) -> str:
    """The run id of a content-named cell: `cell-<16 hex digits>`."""
    return f"{PREFIX}{spec_key(spec)}"


def check_naming(naming: str) -> str:
    if naming not in NAMINGS:
        raise UserError(f"cell naming must be one of {', '.join(NAMINGS)}, got {naming!r}")
    return naming
