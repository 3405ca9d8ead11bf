"""Forms that build a `reuse-console` command line for a job and show it live; the scan form.

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

from ..widgets.inputs import ConsoleInput

Options = list[tuple[str, str]]  # (id, description)
THREADS_HINT = f"{CPU_THREADS}: safe on a busy box"
FormWidget = Input | Select[str] | Checkbox


@dataclass(frozen=True)
class Field:
    """One form row: `flag` is the CLI option, a positional when it starts with '@', or a setting
    the form uses itself (not on the command line) when it starts with '='."""

    flag: str
    label: str
    kind: str = "text"  # text | int | float | json (an object) | choice | bool (a checkbox; flag "--on/--off") | list
    default: str = ""  # a bool field: "true" when ticked by default
    choices: tuple[str, ...] = ()
    required: bool = False
    hint: str = ""
    omit_default: bool = False  # left out of the command line while at its default (the CLI's own)
    blank: bool = False  # a choice that may be left empty (then left out), `hint` saying what that means
    requires: str = ""  # the flag of a field that must be set for this one to be on the command line

    @property
    def widget_id(self) -> str:
        return f"f-{self.flag.partition('/')[0].strip('-@=').replace('-', '_')}"

    @property
    def positional(self) -> bool:
        return self.flag.startswith("@")

    @property
    def own(self) -> bool:
        """A setting of the form itself (e.g. a study field), never an option of the command."""
        return self.flag.startswith("=")

    def args(self, value: str) -> list[str]:
        """This field's part of the command line for `value` (positionals are placed by `build`)."""
        if self.own:
            return []
        if self.kind == "bool":  # a switch says only what differs from the command's default
            on, _, off = self.flag.partition("/")
            return [] if value == self.default else [on if value else off]
        if not value or (self.omit_default and value == self.default):
            return []
        return [self.flag, value]


SWITCHES = ("--resume", "--json", "--full-forward", "--augment", "--no-augment")  # options without a value


def preset_values(fields: list[Field], argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Field values read back from a command's argv (without `reuse-console`), for restarting a job
    with edited settings: every field starts at its default, then takes what argv says. Returns
    the values and the tokens no field takes (shown to the user, left out)."""
    values = {f.flag: f.default for f in fields}
    by_flag: dict[str, tuple[Field, bool]] = {}
    for f in fields:
        if f.kind == "bool":
            on_flag, _, off_flag = f.flag.partition("/")
            by_flag[on_flag], by_flag[off_flag] = (f, True), (f, False)
        elif not f.positional and not f.own:
            by_flag[f.flag] = (f, True)
    positionals = [f for f in fields if f.positional]
    rest: list[str] = []
    filled: set[str] = set()
    tokens = list(argv[1:])
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if token.startswith("-") and name in by_flag:
            f, switched_on = by_flag[name]
            if f.kind == "bool":
                values[f.flag] = "true" if switched_on else ""
            elif eq:
                values[f.flag] = inline
            elif i + 1 < len(tokens):
                values[f.flag] = tokens[i + 1]
                i += 1
        elif token.startswith("-"):
            rest.append(token)
            if not eq and token not in SWITCHES and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                rest.append(tokens[i + 1])  # an option the form does not have, with its value
                i += 1
        elif positionals:
            f = positionals[0]
            if f.kind == "list":  # takes every remaining positional, replacing its default
                values[f.flag] = f"{values[f.flag]} {token}" if f.flag in filled else token
                filled.add(f.flag)
            else:
                values[f.flag] = token
                positionals.pop(0)
        else:
            rest.append(token)
        i += 1
    return values, rest


class JobForm(ModalScreen[list[str] | None]):
    """Dismisses with the argv to run (without `reuse-console`), or None."""

    COMMAND: ClassVar[str] = ""
    TITLE_TEXT: ClassVar[str] = ""
    BINDINGS: ClassVar = [
        Binding("ctrl+s", "start", "Start", id="form.start"),
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
    ]

    def __init__(self, fields: list[Field], options: dict[str, Options], preset: list[str] | None = None) -> None:
        super().__init__(classes="modal")
        self.fields = fields
        self.options = {k: list(v) for k, v in options.items()}
        self.initial, self.left_out = preset_values(fields, preset) if preset else ({}, [])
        for f in fields:  # a preset id no longer offered stays chosen (the command says if it is gone)
            value = self.initial.get(f.flag, "")
            known = self.options.get(f.flag)
            if f.kind == "choice" and value and known is not None and value not in [i for i, _ in known]:
                known.append((value, "not in the lab now"))

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box", classes="modal-box"):
            with VerticalScroll(id="form-fields"), Grid(id="form-grid"):
                for f in self.fields:
                    yield Label(f.label, classes="form-label")
                    yield self._widget(f)
            yield Static("", id="form-command")
            yield Static("Ctrl+S starts the job   Esc cancels   Tab next field", classes="modal-hint")

    def choice_options(self, f: Field) -> list[tuple[str, str]]:
        """(label, value) of a choice field's options."""
        source = self.options.get(f.flag)
        if source is not None:
            return [(f"{i}  {d}" if d else i, i) for i, d in source]
        return [(c, c) for c in f.choices]

    def _widget(self, f: Field) -> FormWidget:
        wid = f.widget_id
        initial = self.initial.get(f.flag, f.default)
        if f.kind == "bool":
            return Checkbox(f.hint, initial == "true", id=wid, compact=True)
        if f.kind == "choice":
            opts = self.choice_options(f)
            values = [v for _, v in opts]
            if f.blank:
                value = initial if initial in values else Select.NULL
            else:
                value = initial if initial in values else (values[0] if values else Select.NULL)
            return Select(
                opts, id=wid, allow_blank=f.blank or not values, value=value, compact=True, prompt=f.hint or "none"
            )
        box = ConsoleInput(value=initial, placeholder=f.hint, id=wid, compact=True, select_on_focus=False)
        if f.kind == "int":
            box.type = "integer"
        elif f.kind == "float":
            box.type = "number"
        return box

    def on_mount(self) -> None:
        self.query_one("#form-box").border_title = self.TITLE_TEXT
        self.refit()
        self._preview()
        self.query_one("#form-grid").children[1].focus()
        if self.left_out:
            self.notify(f"not in this form, left out: {' '.join(self.left_out)}", severity="warning")

    def refit(self) -> None:
        """Hook: adjust choices to what the user has set so far (called before every preview)."""

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
        for f in self.fields:
            if f.positional:
                args += values[f.flag].replace(",", " ").split() if f.kind == "list" else [values[f.flag]]
        for f in self.fields:
            if not f.positional and not (f.requires and not values.get(f.requires)):
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
        self.refit()
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


class ScanForm(JobForm):
    """`reuse-console scan RECIPIENT DONOR --data ...`"""

    COMMAND = "scan"
    TITLE_TEXT = "New scan job"

    def __init__(
        self,
        checkpoints: Options,
        datasets: Options,
        recipient: str | None = None,
        donor: str | None = None,
        preset: list[str] | None = None,
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
        super().__init__(fields, {"@recipient": checkpoints, "@donor": checkpoints, "--data": datasets}, preset)
