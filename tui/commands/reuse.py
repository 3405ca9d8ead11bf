"""`plan`, `grid` and `report`: reuse plans, transfer grids (the paper's experiment 3) and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reuse_console.engine.core.device import DEFAULT_PRECISION, use_threads
from reuse_console.engine.training.spec import default_workers

from ..options import DeviceOpt, JsonOpt, LabOpt, NameOpt, PrecisionOpt, ProgressOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout
from ..render.results import render_experiment, render_plan
from .cluster import ExecutorOpt, PartitionOpt, RayAddressOpt, cancel_cluster_grid, cluster_runner, show_grid_status

plan_app = typer.Typer(
    help=(
        "Reuse plans: which of a donor's tensors a new model can take over.\n\n"
        "With --scan and/or --rmse: infer a plan and store it as plans/NAME.h5. A tensor (layer, kind) is "
        "reusable when swapping the donor's tensor into the recipient costs at most --max-dice-drop Dice on "
        "every present foreground class (scan) and/or its RMSE between the two models is at most --max-rmse "
        "(comparison); --combine says whether both or either must hold. Tensors with no evidence are not "
        'reusable. Prints the non-reusable tensors the way the paper does ("RM: 1,17; W: 1,6,11; B: 1"), the '
        "share of tensors reused (each layer's each kind counts one) and the share of parameter elements.\n\n"
        "Example: reuse-console plan --scan unet-seg-acdc-vs-unet-ae-acdc --max-dice-drop 0.05 --name acdc-ae\n\n"
        "Then: reuse-console plan export acdc-ae --out acdc-ae.toml (edit it) and plan import acdc-ae.toml --name mine"
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


@plan_app.callback()
def plan(
    ctx: typer.Context,
    scan: Annotated[
        Optional[list[str]],
        typer.Option(
            "--scan",
            help="Scan id: Dice of the recipient with each donor tensor swapped in. Repeat it for several "
            "recipient/donor pairs (e.g. seeds: `scan --pairs`), combined by --across.",
        ),
    ] = None,
    across: Annotated[
        str,
        typer.Option(
            "--across",
            help="With several --scan: all (a tensor is reusable only if it is in every pair: its largest drop "
            "counts) or mean (its mean drop over the pairs counts).",
        ),
    ] = "all",
    rmse: Annotated[
        Optional[str], typer.Option("--rmse", help="Comparison id (`reuse-console rmse`): RMSE per tensor.")
    ] = None,
    max_dice_drop: Annotated[
        float,
        typer.Option(
            "--max-dice-drop", help="Largest Dice drop on any foreground class that still counts as reusable."
        ),
    ] = 0.05,
    max_rmse: Annotated[
        Optional[float], typer.Option("--max-rmse", help="Largest RMSE that counts as reusable (needed with --rmse).")
    ] = None,
    combine: Annotated[
        str, typer.Option("--combine", help="With both --scan and --rmse: and (both must hold) or or (either).")
    ] = "and",
    source: Annotated[
        Optional[str],
        typer.Option(
            "--from",
            help="Decide by one measure alone instead of the swaps: rmse, relative, aligned-rmse, cka, bn-dt, "
            "bn-ds or norm between the --scan's recipient and donor (reusable: measure <= --threshold; cka >=). "
            "Prints how often it agrees with the scan's swaps at --max-dice-drop (`predict` ranks the measures).",
        ),
    ] = None,
    threshold: Annotated[
        Optional[float], typer.Option("--threshold", help="With --from: the measure's cut (needed).")
    ] = None,
    name: NameOpt = None,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if source is not None or threshold is not None:
        _plan_from(scan, rmse, source, threshold, max_dice_drop, name, json_out, lab)
        return
    if not scan and rmse is None:
        stdout.print(ctx.get_help())
        raise typer.Exit(0)
    from reuse_console.engine.reuse.plan_lab import plan_from_lab
    from reuse_console.store.lab import Lab

    result = plan_from_lab(
        Lab.from_option(lab),
        scan=scan,
        rmse=rmse,
        max_dice_drop=max_dice_drop,
        max_rmse=max_rmse,
        combine=combine,
        name=name,
        across=across,
    )
    if json_out:
        emit_json(result.to_json())
        return
    stdout.print(render_plan(result))
    stderr.print(f"stored as plan {result.name}")


def _plan_from(
    scan: Optional[list[str]],
    rmse: Optional[str],
    source: Optional[str],
    threshold: Optional[float],
    max_dice_drop: float,
    name: Optional[str],
    json_out: bool,
    lab: Optional[Path],
) -> None:
    """`plan --scan S --from MEASURE --threshold X`: the measure's plan and its agreement with the swaps."""
    from reuse_console.engine.reuse.plan_from import plan_from_measure
    from reuse_console.store.errors import UserError
    from reuse_console.store.lab import Lab

    if source is None or threshold is None:
        raise UserError("--from and --threshold go together: e.g. --from aligned-rmse --threshold 0.02")
    if len(scan or []) != 1 or rmse is not None:
        raise UserError("--from needs exactly one --scan (its recipient and donor are measured) and no --rmse")
    assert scan is not None
    result, agree = plan_from_measure(
        Lab.from_option(lab), scan[0], source, threshold, max_dice_drop=max_dice_drop, name=name
    )
    if json_out:
        emit_json(result.to_json())
        return
    stdout.print(render_plan(result))
    stdout.print(
        f"agrees with the swaps of {scan[0]} (drop <= {max_dice_drop:g}) on {agree.both + agree.neither} of "
        f"{agree.tensors} tensors ({100 * agree.share:.0f}%): both reusable {agree.both}, only by {source} "
        f"{agree.measure_only}, only by the swaps {agree.swaps_only}, neither {agree.neither}"
    )
    stderr.print(f"stored as plan {result.name}")


@plan_app.command("show")
def plan_show(
    plan_id: Annotated[str, typer.Argument(help="Plan id (see `reuse-console ls plans`).")],
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Show a stored plan: its layer x kind table and the non-reusable tensors.

    Example: reuse-console plan show acdc-ae
    """
    from reuse_console.engine.reuse.plans import load_plan
    from reuse_console.store.lab import Lab

    result = load_plan(Lab.from_option(lab), plan_id)
    if json_out:
        emit_json(result.to_json())
        return
    stdout.print(render_plan(result))


@plan_app.command("export")
def plan_export(
    plan_id: Annotated[str, typer.Argument(help="Plan id (see `reuse-console ls plans`).")],
    out: Annotated[Path, typer.Option("--out", help="TOML file to write (refuses to replace one unless --force).")],
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    lab: LabOpt = None,
) -> None:
    """Write a plan as commented TOML to read and hand-edit; store the edit with `plan import`.

    The file lists the non-reusable tensors per kind ([not_reusable] RM = [1, 17] ...) above the plan's
    universe (every layer, its tensors' sizes and the evidence). Edit only [not_reusable].

    Example: reuse-console plan export acdc-ae --out acdc-ae.toml
    """
    from reuse_console.engine.reuse.plan_toml import export_plan_toml
    from reuse_console.engine.reuse.plans import load_plan
    from reuse_console.store.lab import Lab

    path = export_plan_toml(load_plan(Lab.from_option(lab), plan_id), out, overwrite=force)
    stderr.print(f"wrote {path}")


@plan_app.command("import")
def plan_import(
    file: Annotated[Path, typer.Argument(help="Plan TOML file (as `plan export` writes it, possibly edited).")],
    name: Annotated[
        Optional[str], typer.Option("--name", help="Id of the new plan (default: the file's `name`).")
    ] = None,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Store a (hand-edited) plan TOML file as a new plan in the lab.

    Example: reuse-console plan import acdc-ae.toml --name acdc-ae-edited
    """
    from reuse_console.engine.reuse.plan_toml import import_plan_toml
    from reuse_console.engine.reuse.plans import save_plan
    from reuse_console.store.lab import Lab

    plan_obj = import_plan_toml(file, name=name)
    save_plan(Lab.from_option(lab), plan_obj)
    if json_out:
        emit_json(plan_obj.to_json())
        return
    stdout.print(render_plan(plan_obj))
    stderr.print(f"stored as plan {plan_obj.name}")


def grid(
    study: Annotated[Path, typer.Argument(help="Study TOML file (see examples/study.toml).")],
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted grid: train only the missing cells.")
    ] = False,
    devices: Annotated[
        Optional[str],
        typer.Option(
            "--devices",
            help="Run cells concurrently, one worker process per device: cuda:0,cuda:1 or all (every visible GPU).",
        ),
    ] = None,
    name: NameOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = DEFAULT_PRECISION,
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            help=f"Data loader processes per cell (default {default_workers('cuda')} on CUDA, "
            f"{default_workers('cpu')} on CPU).",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = "rich",
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    partition: PartitionOpt = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show each cell's state (scheduler and lab) instead of running.")
    ] = False,
    cancel: Annotated[
        bool,
        typer.Option(
            "--cancel",
            help="Cancel a grid running on SLURM or Ray (scancel / Ray cancel; its grid process stops without "
            "resubmitting); finished cells are kept: --resume continues.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Train a transfer grid: every (subjects, source, mode, seed) cell of a study, then its table.

    Each cell trains a segmentation model on the study's target data set from random initialisation or from a
    donor's reusable tensors (its plan), frozen or fine-tuned, and is scored on the validation subjects. The
    experiment (experiments/NAME.h5) holds the paper's Table 3: Dice per class, mean ± std over seeds, and the
    difference to random initialisation; with a `reference` in the study also RMSE per layer of every cell's
    model against it (figures 13/14: `reuse-console report NAME`). Cells are runs named NAME.CELL, so a killed
    grid keeps its finished cells: rerun with --resume.

    Example: reuse-console grid examples/study.toml --devices all

    On a cluster (docs/cluster.md): reuse-console grid examples/study.toml --executor slurm
    """
    from reuse_console.engine.grids.grid import parse_devices, run_grid
    from reuse_console.engine.grids.study import load_study
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    use_threads(threads, device)  # before the workers are spawned: they inherit it
    the_study = load_study(study)
    the_lab = Lab.from_option(lab)
    if status:
        show_grid_status(the_lab, name or the_study.name, json_out)
        return
    if cancel:
        cancel_cluster_grid(the_lab, name or the_study.name, json_out)
        return
    chosen = parse_devices(devices)
    runner, naming = cluster_runner(
        study, executor, ray_address, partition, the_lab, name or the_study.name, device, precision
    )
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        exp = run_grid(
            the_lab,
            the_study,
            name=name,
            resume=resume,
            device=device,
            devices=chosen,
            precision=precision,
            workers=workers,
            report=report,
            naming=naming,
            runner=runner,
        )
    if json_out:
        emit_json(exp.to_json())
        return
    if progress == "jsonl":
        return
    stdout.print(render_experiment(exp))
    stderr.print(f"stored as experiment {exp.name} (figures: reuse-console report {exp.name} --out DIR)")


def report(
    ids: Annotated[list[str], typer.Argument(help="Scan, comparison, plan or experiment ids (or kind/id).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG, CSV and Markdown files (created).")],
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Paper-style figures and tables as files: PNG (matplotlib), CSV, Markdown, and an index.md.

    scan: Dice per layer, one panel per kind, with the unswapped baseline (figs 3/4/7/8). comparison: RMSE per
    layer per kind (figs 6/10-12) and, for two models, BN scale/shift (figs 5/9). plan: a layer x kind map.
    experiment: the table (PNG, CSV, Markdown), foreground Dice bars, and RMSE after reuse against the
    reference per subject count (figs 13/14). Needs matplotlib (pip install 'reuse-console[report]').

    Example: reuse-console report my-scan my-rmse acdc-reuse --out figures/
    """
    from reuse_console.engine.report.build import make_report
    from reuse_console.store.lab import Lab

    files = make_report(Lab.from_option(lab), ids, out)
    if json_out:
        emit_json({"files": [str(p) for p in files]})
        return
    for path in files:
        stdout.print(str(path))


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
    app.command("grid")(grid)
    app.command("report")(report)
