"""Progress events: the engine's only way to talk about long work.

The engine never prints. Long functions take a `report: Reporter` and call it with these
dataclasses; the CLI renders them with rich, jobs write them as JSON lines, the TUI reads those.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base of every progress event; `type` names it in JSON."""

    type: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)


@dataclass(frozen=True)
class Started(Event):
    """Long work began: `what` says what, `total` counts its units (steps, variants, cells)."""

    type: ClassVar[str] = "started"
    what: str
    total: int
    unit: str = "steps"
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message(Event):
    """A line of information for the user (a stage began, a file was written)."""

    type: ClassVar[str] = "message"
    text: str


@dataclass(frozen=True)
class Progress(Event):
    """Some units of the current work are done (subjects generated, volumes imported)."""

    type: ClassVar[str] = "progress"
    done: int
    total: int
    text: str = ""


@dataclass(frozen=True)
class StepEnd(Event):
    """One optimisation step finished."""

    type: ClassVar[str] = "step_end"
    epoch: int
    step: int
    steps_per_epoch: int
    global_step: int
    total_steps: int
    loss: float
    images_per_s: float


@dataclass(frozen=True)
class EpochEnd(Event):
    """One epoch finished and was validated and checkpointed."""

    type: ClassVar[str] = "epoch_end"
    epoch: int
    epochs: int
    train_loss: float
    val: dict[str, float]
    best: bool
    images_per_s: float
    seconds: float
    memory_mb: float = 0.0


@dataclass(frozen=True)
class VariantDone(Event):
    """One swap variant of a scan was evaluated."""

    type: ClassVar[str] = "variant_done"
    index: int
    total: int
    layer: int | str
    kind: str
    alpha: float
    dice: dict[str, float]


@dataclass(frozen=True)
class CellDone(Event):
    """One cell of a transfer grid was trained and evaluated."""

    type: ClassVar[str] = "cell_done"
    index: int
    total: int
    cell: str
    dice: dict[str, float]


@dataclass(frozen=True)
class Finished(Event):
    """Long work ended; `result` is the id of what it stored, if anything."""

    type: ClassVar[str] = "finished"
    what: str
    result: str = ""
    seconds: float = 0.0


Reporter = Callable[[Event], None]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Started, Message, Progress, StepEnd, EpochEnd, VariantDone, CellDone, Finished)
}


def silent(event: Event) -> None:
    """A reporter that drops everything (the default for library calls and tests)."""


def from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from `to_dict` output (unknown fields are ignored)."""
    cls = EVENT_TYPES[data["type"]]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
