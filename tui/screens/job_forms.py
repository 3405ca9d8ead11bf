"""Forms that build a `reuse-console` command line for a job (train, scan) and show it live.

A form only assembles argv from what the user chose; the command itself validates everything
(and its errors show in the job's log), so the console and the shell behave the same. Defaults
and choices are the CLI's own (`TRAIN_DEFAULTS`, `PRECISIONS`, `CPU_THREADS`), read from the
engine, so a form never offers what the command would not do by itself.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Select, Static

from reuse_console.engine.core.device import CPU_THREADS, DEFAULT_PRECISION, PRECISIONS
from reuse_console.engine.training.spec import INPUTS, TASKS, TRAIN_DEFAULTS

from ..widgets.inputs import ConsoleInput

Options = list[tuple[str, str]]  # (id, description)
THREADS_HINT = f"{CPU_THREADS}: safe on a busy box"
INPUT_NOTES = {"as-is": "the MRI channel", "repeat": "repeated to the model's input channels"}
FormWidget = Input | Select[str] | Checkbox
ARCH_HINT = "unet, pspnet or package.module:Class|function"
ARCH_CONFIG_HINT = 'JSON, e.g. {"base_width": 16}; blank: defaults'


@dataclass(frozen=True)
class Field:
    """One form row: `flag` is the CLI option (or a positional when it starts with '@')."""

    flag: str
    label: str
    kind: str = "text"  # text | int | float | json (an object) | choice | bool (a checkbox; flag "--on/--off")
    default: str = ""  # a bool field: "true" when ticked by default
    choices: tuple[str, ...] = ()
    required: bool = False
    hint: str = ""
    omit_default: bool = False  # left out of the command line while at its default (the CLI's own)

    @property
    def widget_id(self) -> str:
        return f"f-{self.flag.partition('/')[0].strip('-@').replace('-', '_')}"

    def args(self, value: str) -> list[str]:
        """This field's part of the command line for `value` (positionals are placed by `build`)."""
        if self.kind == "bool":  # a switch says only what differs from the command's default
            on, _, off = self.flag.partition("/")
            return [] if value == self.default else [on if value else off]
        if not value or (self.omit_default and value == self.default):
            return []
        return [self.flag, value]


class JobForm(ModalScreen[list[str] | None]):
    """Dismisses with the argv to run (without `reuse-console`), or None."""

    COMMAND: ClassVar[str] = ""
    TITLE_TEXT: ClassVar[str] = ""
    BINDINGS: ClassVar = [
        Binding("ctrl+s", "start", "Start", id="form.start"),
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
    ]

    def __init__(self, fields: list[Field], options: dict[str, Options]) -> None:
        super().__init__(classes="modal")
        self.fields = fields
        self.options = options

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box", classes="modal-box"):
            with VerticalScroll(id="form-fields"), Grid(id="form-grid"):
                for f in self.fields:
                    yield Label(f.label, classes="form-label")
                    yield self._widget(f)
            yield Static("", id="form-command")
            yield Static("Ctrl+S starts the job   Esc cancels   Tab next field", classes="modal-hint")

    def _widget(self, f: Field) -> FormWidget:
        wid = f.widget_id
        if f.kind == "bool":
            return Checkbox(f.hint, f.default == "true", id=wid, compact=True)
        if f.kind == "choice":
            source = self.options.get(f.flag)
            if source is not None:
                opts = [(f"{i}  {d}" if d else i, i) for i, d in source]
            else:
                opts = [(c, c) for c in f.choices]
            values = [v for _, v in opts]
            value = f.default if f.default in values else (values[0] if values else Select.NULL)
            return Select(opts, id=wid, allow_blank=not values, value=value, compact=True, prompt=f.hint or "none")
        box = ConsoleInput(value=f.default, placeholder=f.hint, id=wid, compact=True, select_on_focus=False)
        if f.kind == "int":
            box.type = "integer"
        elif f.kind == "float":
            box.type = "number"
        return box

    def on_mount(self) -> None:
        self.query_one("#form-box").border_title = self.TITLE_TEXT
        self._preview()
        self.query_one("#form-grid").children[1].focus()

    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for f in self.fields:
            widget = self.query_one(f"#{f.widget_id}")
            if isinstance(widget, Checkbox):
                out[f.flag] = "true" if widget.value else ""
            elif isinstance(widget, Select):
                value = widget.value
                out[f.flag] = "" if value is Select.NULL or value is None else str(value)
            elif isinstance(widget, Input):
                out[f.flag] = widget.value.strip()
            else:  # `_widget` makes only these three
                raise TypeError(f"field {f.flag}: unexpected widget {type(widget).__name__}")
        return out

    def argv(self) -> list[str]:
        """The command's arguments; raises ValueError naming the first bad field."""
        values = self.values()
        for f in self.fields:
            value = values[f.flag]
            if f.required and not value:
                raise ValueError(f"{f.label} is required")
            if value and f.kind == "int":
                int(value)
            if value and f.kind == "float":
                float(value)
            if value and f.kind == "json":
                _json_object(value, f.label)
        return self.build(values)

    def build(self, values: dict[str, str]) -> list[str]:
        """Positional fields first (flag '@name'), then `--flag value` for every non-empty field
        (a checkbox: its switch when not at the default), but those left at a default the command has
        by itself."""
        args = [self.COMMAND]
        args += [values[f.flag] for f in self.fields if f.flag.startswith("@")]
        for f in self.fields:
            if not f.flag.startswith("@"):
                args += f.args(values[f.flag])
        return args

    def _preview(self) -> None:
        line = self.query_one("#form-command", Static)
        try:
            argv = self.argv()
        except ValueError as exc:
            line.update(Text(f"! {exc}", style="bold red"))
            return
        line.update(Text("$ " + shlex.join(["reuse-console", *argv]), style="cyan"))

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self) -> None:
        self._preview()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        try:
            argv = self.argv()
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self.dismiss(argv)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _json_object(text: str, label: str) -> None:
    """ValueError naming the field unless `text` is a JSON object (the CLI says more on a bad key)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label}: not JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise ValueError(f'{label}: give a JSON object, e.g. {{"base_width": 16}}')


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


class TrainForm(JobForm):
    """`reuse-console train ...`"""

    COMMAND = "train"
    TITLE_TEXT = "New training job"

    def __init__(self, datasets: Options) -> None:
        fields = [
            Field("--data", "data set", "choice", required=True, hint="no data sets: import one first"),
            Field("--arch", "arch", "text", TRAIN_DEFAULTS.arch, required=True, hint=ARCH_HINT),
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
            Field("--seed", "seed", "int", str(TRAIN_DEFAULTS.seed)),
            Field("--name", "name", "text", "", hint="blank: derived"),
            Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
            Field("--precision", "precision", "choice", DEFAULT_PRECISION, PRECISIONS),
            Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
        ]
        inputs = [(i, INPUT_NOTES.get(i, "")) for i in INPUTS]
        super().__init__(fields, {"--data": datasets, "--input": inputs})


class ScanForm(JobForm):
    """`reuse-console scan RECIPIENT DONOR --data ...`"""

    COMMAND = "scan"
    TITLE_TEXT = "New scan job"

    def __init__(
        self, checkpoints: Options, datasets: Options, recipient: str | None = None, donor: str | None = None
    ) -> None:
        fields = [
            Field("@recipient", "recipient", "choice", recipient or "", required=True, hint="no checkpoints"),
            Field("@donor", "donor", "choice", "", required=True, hint="no checkpoints"),
            Field("--data", "data set", "choice", required=True, hint="no data sets"),
            Field("--layers", "layers", "text", "all", hint="all, 1-5,9, head"),
            Field("--kinds", "kinds", "text", "all", hint="all, bn, conv, RM,RV"),
            Field("--alphas", "alphas", "text", "1", hint="1 or 0,0.25,0.5,0.75,1"),
            Field("--precision", "precision", "choice", DEFAULT_PRECISION, PRECISIONS),
            Field("--device", "device", "choice", "auto", ("auto", "cpu", "cuda")),
            Field("--threads", "CPU threads", "int", str(CPU_THREADS), hint=THREADS_HINT),
            Field("--name", "name", "text", "", hint="blank: derived"),
        ]
        donor = donor or next((i for i, _ in checkpoints if i != recipient), "")
        fields[1] = Field("@donor", "donor", "choice", donor, required=True, hint="no checkpoints")
        super().__init__(fields, {"@recipient": checkpoints, "@donor": checkpoints, "--data": datasets})
