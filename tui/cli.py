"""The `reuse-console` command: every console action as a typer subcommand.

With no subcommand it opens the Textual console. Heavy imports (torch, textual) happen inside
commands so `--help` stays fast. A UserError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from reuse_console.store.errors import UserError

from .commands import align, cka, cluster, compare, data, demo, jobs, lab, models, predict, reuse, swaps, train
from .output import stderr

app = typer.Typer(
    name="reuse-console",
    help=(
        "Lab console for parameter-reuse studies of CNNs: train segmentation and auto-encoder "
        "models, swap BN/Conv tensors between them, scan every layer and kind, compare by RMSE, "
        "infer reusable layers and run transfer grids. Run with no command to open the console."
    ),
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    lab: Annotated[
        Optional[Path], typer.Option("--lab", envvar="REUSE_LAB", help="Lab directory (default ./lab).")
    ] = None,
    no_mouse: Annotated[bool, typer.Option("--no-mouse", help="Console: do not capture the mouse (SSH).")] = False,
) -> None:
    """Open the console when no command is given."""
    if lab is not None:
        os.environ["REUSE_LAB"] = str(lab)
    _tidy(lab)
    if ctx.invoked_subcommand is not None:
        return
    try:
        from .app import run_console
    except ModuleNotFoundError:
        typer.echo(ctx.get_help())
        return
    run_console(lab, mouse=not no_mouse)


def _tidy(root: Path | None) -> None:
    """Remove what killed writers left in the lab (temp files untouched for 10 minutes whose
    process is gone, claims nobody holds) so they don't pile up; never fails a command."""
    from reuse_console.store.lab import Lab

    try:
        Lab.from_option(root).cleanup(min_age_s=600.0)
    except (OSError, UserError):
        pass


for group in (lab, data, models, train, swaps, compare, cka, align, predict, reuse, cluster, jobs, demo):
    group.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning user errors into one clear line and exit code 2."""
    try:
        app(args=argv, prog_name="reuse-console", standalone_mode=True)
    except UserError as exc:
        from reuse_console.store import claims
        from reuse_console.store.h5 import disk_full

        claims.release_all()  # names claimed for objects the refused command never wrote
        stderr.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        if disk_full(exc):
            _exit_after_disk_full()
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
    except (OSError, RuntimeError) as exc:  # a write the disk (quota, file-size limit) refused
        from reuse_console.store.h5 import disk_full

        reason = disk_full(exc)
        if reason is None:
            raise
        where = f" while writing {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        stderr.print(
            f"[bold red]error:[/bold red] disk full{escape(where)}: {escape(reason)}", highlight=False, soft_wrap=True
        )
        _exit_after_disk_full()
    else:
        return
    sys.exit(2)


def _exit_after_disk_full() -> None:
    """Exit 2 at once. HDF5 keeps objects of the file the disk refused (its temp file is already
    gone and the lab as it was); tearing the interpreter down normally would make the library
    retry those writes, repeat the error and, with some files, crash."""
    from reuse_console.store import claims

    claims.release_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(2)


if __name__ == "__main__":
    main()
