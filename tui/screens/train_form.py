"""The training form: a new model, or a transfer run from a donor's reusable tensors.

The donor (`--init`), plan and mode are the paper's experiment 3 for one cell. Choices come from
the lab and are narrowed to what fits as the user types (engine/jobs/choices.py): donors built
like the architecture and options typed, plans made for the architecture the run will build.
Architecture and options left blank are the donor's (as `train --init` does by itself), so the
command line says only what the user changed.
"""

from __future__ import annotations

import json
from typing import Any

from textual.widgets import Input, Select

from reuse_console.engine.core.device import CPU_THREADS, DEFAULT_PRECISION, PRECISIONS
from reuse_console.engine.jobs.choices import (
    DonorChoice,
    PlanChoice,
    donor_fits,
    options_text,
    plan_fits,
    run_arch,
)
from reuse_console.engine.training.spec import INPUTS, TASKS, TRAIN_DEFAULTS

from .job_forms import THREADS_HINT, Field, JobForm, Options

INPUT_NOTES = {"as-is": "the MRI channel", "repeat": "repeated to the model's input channels"}
ARCH_HINT = "unet, pspnet or package.module:Class|function"
ARCH_CONFIG_HINT = 'JSON, e.g. {"base_width": 16}; blank: defaults'
MODES = ("finetune", "freeze")  # train --mode (engine/reuse/transfer.py's MODES, default first)


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def train_fields() -> list[Field]:
    """The training form's rows, in the order of the command line it builds."""
    return [
        Field("--data", "data set", "choice", required=True, hint="no data sets: import one first"),
        Field("--init", "donor (init)", "choice", blank=True, hint="none: random initialisation"),
        Field("--plan", "reuse plan", "choice", blank=True, hint="none (needs a donor)"),
        Field("--mode", "mode", "choice", MODES[0], MODES, requires="--init"),
        Field("--arch", "arch", "text", "", hint=f"blank: {TRAIN_DEFAULTS.arch}; {ARCH_HINT}"),
        Field("--task", "task", "choice", TRAIN_DEFAULTS.task, TASKS),
        Field("--arch-config", "arch config", "json", "", hint=ARCH_CONFIG_HINT),
        Field("--input", "input", "choice", TRAIN_DEFAULTS.input, INPUTS, omit_default=True),
        Field("--output", "output key", "text", TRAIN_DEFAULTS.output or "", hint="blank: out (dict outputs)"),
        Field(
            "--deep-supervision/--main-head",
            "deep supervision",
            "bool",
            "true" if TRAIN_DEFAULTS.deep_supervision else "",
            hint="train every head",
        ),
        Field("--depth", "depth (3D)", "int", _blank(TRAIN_DEFAULTS.depth), hint="blank: whole volumes"),
        Field("--epochs", "epochs", "int", str(TRAIN_DEFAULTS.epochs)),
        Field("--batch", "batch", "int", str(TRAIN_DEFAULTS.batch)),
        Field("--lr", "learning rate", "float", str(TRAIN_DEFAULTS.lr)),
        Field("--subjects", "subjects", "int", "", hint="blank: all training subjects"),
        Field("--size", "size (px)", "int", _blank(TRAIN_DEFAULTS.size), hint="blank: the data set's size"),
        Field("--seed", "seed", "int", str(TRAIN_DEFAULTS.seed)),
        Field("--name", "name", "text", "", hint="blank: derived"),
        Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
        Field("--precision", "precision", "choice", DEFAULT_PRECISION, PRECISIONS),
        Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
    ]


class TrainForm(JobForm):
    """`reuse-console train ...`, with or without transfer."""

    COMMAND = "train"
    TITLE_TEXT = "New training job"

    def __init__(
        self,
        datasets: Options,
        donors: list[DonorChoice] | None = None,
        plans: list[PlanChoice] | None = None,
        preset: list[str] | None = None,
    ) -> None:
        self.donors = {d.id: d for d in donors or []}
        self.plans = list(plans or [])
        inputs = [(i, INPUT_NOTES.get(i, "")) for i in INPUTS]
        options = {
            "--data": datasets,
            "--input": inputs,
            "--init": [(d.id, d.note) for d in self.donors.values()],
            "--plan": [(p.id, p.note) for p in self.plans],
        }
        super().__init__(train_fields(), options, preset)
        self._offered: dict[str, list[str]] = {}

    def _typed(self) -> tuple[str, dict[str, Any]]:
        """The architecture and options typed so far (a config that is not JSON yet counts as none)."""
        arch = self.query_one("#f-arch", Input).value.strip()
        try:
            options = json.loads(self.query_one("#f-arch_config", Input).value or "{}")
        except json.JSONDecodeError:
            options = {}
        return arch, options if isinstance(options, dict) else {}

    def _chosen(self, widget_id: str) -> str:
        value = self.query_one(widget_id, Select).value
        return "" if value is Select.NULL or value is None else str(value)

    def refit(self) -> None:
        """Offer only donors that fit the typed architecture and options, and plans for the
        architecture the run builds; say in the blank fields what the donor gives them."""
        arch, options = self._typed()
        donors = [d for d in self.donors.values() if donor_fits(d, arch, options)]
        self._offer("--init", "#f-init", [(d.id, d.note) for d in donors])
        donor = self.donors.get(self._chosen("#f-init"))
        built = run_arch(arch, donor, TRAIN_DEFAULTS.arch)
        self._offer("--plan", "#f-plan", [(p.id, p.note) for p in self.plans if plan_fits(p, built)])
        arch_box = self.query_one("#f-arch", Input)
        config_box = self.query_one("#f-arch_config", Input)
        if donor is not None:
            arch_box.placeholder = f"blank: {donor.arch}, the donor's"
            config_box.placeholder = f"blank: the donor's {options_text(donor.options) or '(defaults)'}"
        else:
            arch_box.placeholder = f"blank: {TRAIN_DEFAULTS.arch}; {ARCH_HINT}"
            config_box.placeholder = ARCH_CONFIG_HINT

    def _offer(self, flag: str, widget_id: str, choices: Options) -> None:
        """Replace a choice's options when they changed, keeping the chosen one if still offered."""
        ids = [i for i, _ in choices]
        if self._offered.get(flag) == ids:
            return
        self._offered[flag] = ids
        select: Select[str] = self.query_one(widget_id, Select)
        chosen = self._chosen(widget_id)
        with select.prevent(Select.Changed):
            select.set_options([(f"{i}  {d}" if d else i, i) for i, d in choices])
            if chosen in ids:
                select.value = chosen

    def build(self, values: dict[str, str]) -> list[str]:
        if bool(values["--init"]) != bool(values["--plan"]):
            raise ValueError("a transfer run needs both a donor and a reuse plan (or neither)")
        return super().build(values)
