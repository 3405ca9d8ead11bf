"""The grid form: run a study file, or build one (the paper's Table 3) from the lab's donors and plans.

A built study is written to the lab as `studies/NAME.toml` when the job starts (by the Jobs
screen's worker, engine/grids/study_toml.py), and the command is `grid` on that file: the same
file a user could edit and rerun by hand. The form checks the study's fields as the user types;
the study parser checks the file again before it is written.
"""

from __future__ import annotations

from typing import Any

from reuse_console.engine.core.device import CPU_THREADS, DEFAULT_PRECISION, PRECISIONS
from reuse_console.engine.grids.study_toml import SourceRow, study_data, study_path
from reuse_console.engine.jobs.choices import DonorChoice
from reuse_console.engine.training.spec import TRAIN_DEFAULTS
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

from .job_forms import THREADS_HINT, Field, JobForm, Options

SOURCE_ROWS = 3  # donor + plan rows the form offers (a study file can have any number)


def grid_fields() -> list[Field]:
    """The grid form's rows: the file, or the study to build; then how the grid job runs."""
    fields = [
        Field("@study", "study file", "choice", blank=True, hint="none: build one below"),
        Field("--name", "name", "text", "", hint="the experiment's id (a built study: required)"),
        Field("=target", "target data", "choice", hint="no data sets"),
        Field("=subjects", "subjects", "text", "all", hint="training subjects per cell: 4,20,all"),
        Field("=seeds", "seeds", "text", "2", hint="a count (3) or seeds (0,1,5)"),
        Field("=random", "random row", "bool", "true", hint="a random-initialisation row"),
        Field("=freeze", "freeze", "bool", "true", hint="donor tensors kept fixed"),
        Field("=finetune", "finetune", "bool", "true", hint="donor tensors only initialise"),
    ]
    for n in range(1, SOURCE_ROWS + 1):
        fields.append(Field(f"=donor{n}", f"donor {n}", "choice", blank=True, hint="none"))
        fields.append(Field(f"=plan{n}", f"plan {n}", "choice", blank=True, hint="none"))
    fields += [
        Field("=epochs", "epochs", "int", str(TRAIN_DEFAULTS.epochs)),
        Field("=batch", "batch", "int", str(TRAIN_DEFAULTS.batch)),
        Field("=lr", "learning rate", "float", str(TRAIN_DEFAULTS.lr)),
        Field("=size", "size (px)", "int", "", hint="blank: the data set's size"),
        Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
        Field("--precision", "precision", "choice", DEFAULT_PRECISION, PRECISIONS),
        Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
    ]
    return fields


class GridForm(JobForm):
    """`reuse-console grid STUDY.toml ...`; `study` holds a built study to write before it starts."""

    COMMAND = "grid"
    TITLE_TEXT = "New grid (transfer study)"

    def __init__(
        self,
        lab: Lab,
        datasets: Options,
        donors: list[DonorChoice],
        plans: Options,
        studies: Options,
        preset: list[str] | None = None,
    ) -> None:
        self.lab = lab
        self.donors = {d.id: d for d in donors}
        self.study: dict[str, Any] | None = None
        options: dict[str, Options] = {"@study": studies, "=target": datasets}
        for n in range(1, SOURCE_ROWS + 1):
            options[f"=donor{n}"] = [(d.id, d.note) for d in donors]
            options[f"=plan{n}"] = plans
        super().__init__(grid_fields(), options, preset)

    def build(self, values: dict[str, str]) -> list[str]:
        """`grid FILE` with the job options; a built study goes to studies/NAME.toml (kept in
        `self.study` until the job starts)."""
        flags = [a for f in self.fields if not f.positional for a in f.args(values[f.flag])]
        if values["@study"]:
            self.study = None
            return [self.COMMAND, values["@study"], *flags]
        name = values["--name"]
        if not name:
            raise ValueError("name is required to build a study (or choose a study file)")
        try:
            self.study = study_data(
                name=name,
                target=values["=target"],
                sources=[SourceRow(values[f"=donor{n}"], values[f"=plan{n}"]) for n in range(1, SOURCE_ROWS + 1)],
                random=values["=random"] == "true",
                modes=[m for m in ("freeze", "finetune") if values[f"={m}"] == "true"],
                subjects=values["=subjects"],
                seeds=values["=seeds"],
                train=self._train(values),
            )
        except UserError as exc:
            raise ValueError(str(exc)) from exc
        path = str(study_path(self.lab, name))
        return [self.COMMAND, path, *[a for a in flags if a not in ("--name", name)]]

    def _train(self, values: dict[str, str]) -> dict[str, Any]:
        """The [train] table: the donors' architecture and options (one for all), the numbers typed."""
        chosen = [self.donors[v] for n in range(1, SOURCE_ROWS + 1) if (v := values[f"=donor{n}"]) in self.donors]
        kinds = {(d.arch, repr(sorted(d.options.items()))) for d in chosen}
        if len(kinds) > 1:
            raise UserError(
                f"donors {chosen[0].id} and {chosen[-1].id} are built differently: a grid trains one architecture"
            )
        table: dict[str, Any] = {
            "epochs": int(values["=epochs"] or TRAIN_DEFAULTS.epochs),
            "batch": int(values["=batch"] or TRAIN_DEFAULTS.batch),
            "lr": float(values["=lr"] or TRAIN_DEFAULTS.lr),
            "size": int(values["=size"]) if values["=size"] else None,
        }
        if chosen:
            table["arch"], table["arch_config"] = chosen[0].arch, dict(chosen[0].options)
        return table
