"""`demo`: the whole study on the embedded phantom, then the console."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from reuse_console.engine.core.device import use_threads

from ..options import DeviceOpt, JsonOpt, LabOpt, ProgressOpt, ThreadsOpt
from ..output import command_name, emit_json, fmt, stderr, stdout

if TYPE_CHECKING:
    from reuse_console.engine.demo import DemoResult
    from reuse_console.store.lab import Lab


def demo(
    quick: Annotated[
        bool, typer.Option("--quick", help="Reduced sizes for CI: about 4 minutes on 2 CPU cores.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the phantom and the import split.")] = 0,
    device: DeviceOpt = "auto",
    precision: Annotated[
        Optional[str],
        typer.Option("--precision", help="Training precision (default bf16 on CPU/CUDA; scans always run exact fp32)."),
    ] = None,
    threads: ThreadsOpt = None,
    figures: Annotated[
        Optional[Path], typer.Option("--figures", help="Where the report goes (default LAB/figures).")
    ] = None,
    console: Annotated[
        bool, typer.Option("--console/--no-console", help="Open the console at the end when on a terminal.")
    ] = True,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Run the paper's study end to end on synthetic cardiac MRI, with no data and no GPU.

    Phantom data sets acdc, t1, rvsc -> import -> seg and ae UNets on acdc (seeds 0 and 1), t1 and rvsc -> experiment 1: scan of the acdc seg model with its auto-encoder's tensors over two seed pairs, raw and with recalibrated norm statistics, and against its own initial weights -> a donor of another seed, raw and aligned, CKA and predictor tables (does RMSE predict the drop?) -> RMSE of the models -> one reuse plan per donor -> experiment 3: a transfer grid (random init, auto2seg, seg2seg, rvsc2acdc and the controls meanvar, reinit, selffer; freeze and finetune; two training-subject counts; two seeds) -> figures -> the console.

    Every step is skipped when its result is already in the lab, so running it again (or after a kill) only does what is missing. The full demo takes about 25 minutes on 2 CPU cores, --quick about 4.

    Example: reuse-console --lab demo-lab demo --quick
    """
    from reuse_console.engine.demo import run_demo, summary
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    use_threads(threads, device)
    the_lab = Lab.from_option(lab)
    with make_reporter("none" if json_out and progress == "rich" else progress) as report:
        result = run_demo(
            the_lab, quick=quick, seed=seed, device=device, precision=precision, figures=figures, report=report
        )
    if json_out:
        emit_json(summary(result))
        return
    print_summary(the_lab, result)
    if console and sys.stdin.isatty() and sys.stdout.isatty():
        from ..app import run_console

        run_console(the_lab.root, mouse=True)


def print_summary(lab: Lab, result: DemoResult) -> None:
    """Models with their scores, the plans, the grid table and where the figures are."""
    from reuse_console.engine.demo import control_findings
    from reuse_console.engine.grids.experiment import load_experiment
    from reuse_console.engine.reuse.plans import load_plan
    from reuse_console.store.checkpoints import read_meta

    from ..render.results import render_experiment

    models = Table(title="models", title_justify="left")
    for col in ("checkpoint", "task", "data", "epoch", "val score"):
        models.add_column(col)
    for ref in result.models:
        meta = read_meta(lab.path("checkpoints", ref))
        score = (
            f"Dice fg {fmt(meta.metrics.get('dice_fg'))}"
            if meta.task == "seg"
            else f"PSNR {fmt(meta.metrics.get('psnr'), 1)} dB"
        )
        models.add_row(ref, meta.task, meta.data, str(meta.epoch), score)
    stdout.print(models)
    stdout.print("[bold]reuse plans[/bold] (a tensor is reusable when swapping it in costs at most 0.05 Dice)")
    for ref in result.plans:
        s = load_plan(lab, ref).summary()
        stdout.print(
            f"  {ref}: {100 * (s['tensor_share'] or 0):.0f}% of tensors, {100 * (s['element_share'] or 0):.0f}% of "
            f"elements reused; not reusable: {s['not_reusable'] or 'none'}"
        )
    found = control_findings(lab)
    stdout.print("[bold]controls[/bold]")
    stdout.print(
        f"  swaps from unet-ae-acdc cost on average (foreground Dice) raw / with the norm statistics re-estimated "
        f"after the swap: RM and RV {found.rm_rv_drop:.3f} / {found.rm_rv_drop_recalibrated:.3f}, conv W "
        f"{found.w_drop:.3f} / {found.w_drop_recalibrated:.3f}"
    )
    stdout.print(
        f"  of the {found.reused} tensors {found.plan} reuses, {found.fine_at_init} cost at most 0.05 Dice when "
        "reset to unet-seg-acdc's initial weights (scan-seg-vs-init-acdc)"
    )
    stdout.print("[bold]does difference predict the swap's Dice drop?[/bold] (Spearman rho over all tensors)")
    for line in result.similarity:
        stdout.print(f"  {line}")
    stdout.print(render_experiment(load_experiment(lab, result.experiment)))
    stderr.print(
        f"demo finished in {result.seconds:.0f} s; lab {result.lab}; figures: "
        f"{Path(result.figures[0]).parent if result.figures else '-'} "
        f"(open index.md); open the console with `{command_name()} --lab {result.lab}`"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
