"""`ls` and `show`: what is in the lab."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from reuse_console.store.inspect import describe
from reuse_console.store.lab import KINDS, Lab

from ..options import JsonOpt, LabOpt
from ..output import emit_json, stdout

KIND_HELP = f"One of: {', '.join(KINDS)} (singular accepted). Default: all."


def _kind(kind: str | None) -> str | None:
    if kind is None:
        return None
    k = kind.lower()
    if k in KINDS:
        return k
    if f"{k}s" in KINDS:
        return f"{k}s"
    from reuse_console.store.errors import UserError

    raise UserError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")


def _summary_text(summary: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, (dict, list)))


def ls(
    kind: Annotated[Optional[str], typer.Argument(help=KIND_HELP, show_default=False)] = None,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the objects in the lab (data sets, checkpoints, runs, scans ...)."""
    the_lab = Lab.from_option(lab)
    entries = the_lab.entries(_kind(kind))
    if json_out:
        emit_json(
            [
                {"id": e.id, "kind": e.kind, "created": e.created, "summary": e.summary, "error": e.error}
                for e in entries
            ]
        )
        return
    if not entries:
        stdout.print(
            f"The lab {the_lab.root} is empty. Start with `reuse-console demo --quick`, or "
            "`reuse-console data phantom --out phantom/acdc` then `reuse-console data import phantom/acdc "
            "--format acdc --name acdc`."
        )
        return
    table = Table(title=f"lab {the_lab.root}", title_justify="left")
    for col in ("kind", "id", "created", "summary"):
        table.add_column(col, overflow="fold")
    for e in entries:
        summary = f"[red]{e.error}[/red]" if e.error else _summary_text(e.summary)
        table.add_row(e.kind[:-1], e.id, e.created.replace("+00:00", "Z"), summary)
    stdout.print(table)


def show(
    ref: Annotated[str, typer.Argument(help="Object id, or kind/id when an id is in two kinds.")],
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one object: its attributes, provenance and the datasets inside its file."""
    entry = Lab.from_option(lab).resolve(ref)
    if entry.error:
        from reuse_console.store.errors import UserError

        raise UserError(f"{entry.kind}/{entry.id}: {entry.error}")
    info = describe(entry.path)
    info = {"id": entry.id, "kind": entry.kind, "path": str(entry.path), **info}
    if json_out:
        emit_json(info)
        return
    table = Table(title=f"{entry.kind[:-1]} {entry.id}", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("path", str(entry.path))
    for key, value in info["attrs"].items():
        table.add_row(key, str(value))
    stdout.print(table)
    data = Table(title=f"{info['dataset_count']} datasets", title_justify="left")
    for col in ("path", "shape", "dtype"):
        data.add_column(col)
    for item in info["datasets"][:40]:
        data.add_row(item["path"], "x".join(map(str, item["shape"])) or "scalar", item["dtype"])
    if info["dataset_count"] > 40:
        data.add_row(f"... {info['dataset_count'] - 40} more (--json lists up to 200)", "", "")
    stdout.print(data)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("show")(show)
