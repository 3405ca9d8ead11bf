"""`train` and `eval`: train a seg or ae model on a lab data set, resume it, score a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from reuse_console.engine.core.device import DEFAULT_PRECISION, use_threads
from reuse_console.engine.training.spec import TRAIN_DEFAULTS, default_workers

from ..options import (
    PRECISION_HELP,
    DeepSupervisionOpt,
    DepthOpt,
    DeviceOpt,
    InputOpt,
    JsonOpt,
    LabOpt,
    NameOpt,
    OutputOpt,
    PrecisionOpt,
    ProgressOpt,
    ThreadsOpt,
)
from ..output import emit_json, fmt, sigterm_as_interrupt, stderr, stdout

TRAIN_HELP = (
    "Train a segmentation (seg) or auto-encoder (ae) model on a lab data set.\n\n"
    "seg: one output per class, loss = cross-entropy + soft Dice (the Dice term averages the present "
    "foreground classes). ae: the same network with the same C output channels, each reconstructing the "
    "input (MSE), so every tensor has the seg model's shape. Adam; augmentation on (flips, small rotations "
    "and scales, intensity jitter; --no-augment turns it off).\n\n"
    "Every epoch is validated (seg: Dice per class; ae: MSE/PSNR) and stored: checkpoints/NAME.h5 (best "
    "epoch), checkpoints/NAME.last.h5 (last epoch, resumable) and runs/NAME.h5 (history, readable while it "
    "grows). --resume NAME continues after the last finished epoch (a run killed during its first epoch "
    "starts again from epoch 1; one killed after its last epoch is only marked finished); on CPU the result is "
    "bit-identical to an uninterrupted run.\n\n"
    "Example: reuse-console train --arch unet --task seg --data acdc --subjects 10 --epochs 20\n\n"
    "Transfer (the paper's experiment 3): --init DONOR --plan PLAN loads the plan's reusable tensors from "
    "checkpoint DONOR; --mode freeze keeps them fixed (no gradient, no optimizer update, BN running statistics "
    "not updated), --mode finetune trains them like the rest. Example: reuse-console train --data acdc "
    "--subjects 10 --init unet-ae-t1 --plan t1-ae --mode freeze"
)


def train(
    data: Annotated[
        Optional[str], typer.Option("--data", help="Data set id in the lab (see `reuse-console ls datasets`).")
    ] = None,
    arch: Annotated[
        Optional[str],
        typer.Option(
            "--arch",
            help=f"unet | pspnet | package.module:ClassName | package.module:factory_function (default "
            f"{TRAIN_DEFAULTS.arch}; with --init, the donor's architecture and options).",
            show_default=False,
        ),
    ] = None,
    arch_config: Annotated[
        Optional[str],
        typer.Option(
            "--arch-config",
            help="JSON overrides of the arch defaults, e.g. '{\"base_width\": 16}', or @FILE. Channel counts "
            "(in_channels, out_channels, classes, num_classes) may be given; the model is probed on one batch "
            "before training and refused when they do not fit the data set.",
        ),
    ] = None,
    input_mode: InputOpt = TRAIN_DEFAULTS.input,
    output_key: OutputOpt = TRAIN_DEFAULTS.output,
    deep_supervision: DeepSupervisionOpt = TRAIN_DEFAULTS.deep_supervision,
    depth: DepthOpt = TRAIN_DEFAULTS.depth,
    task: Annotated[str, typer.Option("--task", help="seg (segmentation) or ae (auto-encoder).")] = TRAIN_DEFAULTS.task,
    subjects: Annotated[
        Optional[int], typer.Option("--subjects", help="Train on N training subjects picked by --seed (default: all).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs to train.")] = TRAIN_DEFAULTS.epochs,
    batch: Annotated[int, typer.Option("--batch", help="Slices per batch.")] = TRAIN_DEFAULTS.batch,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate.")] = TRAIN_DEFAULTS.lr,
    seed: Annotated[
        int, typer.Option("--seed", help="Seeds initialisation, subject choice, order and augmentation.")
    ] = TRAIN_DEFAULTS.seed,
    name: NameOpt = None,
    size: Annotated[
        Optional[int],
        typer.Option("--size", help="Resample slices to SIZE x SIZE pixels (default: the data set's size)."),
    ] = TRAIN_DEFAULTS.size,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random flips, rotations, scales, intensity.")
    ] = TRAIN_DEFAULTS.augment,
    device: DeviceOpt = "auto",
    precision: Annotated[
        Optional[str],
        typer.Option(
            "--precision",
            help=f"{PRECISION_HELP}. Default {DEFAULT_PRECISION}; resume: the run's.",
        ),
    ] = None,
    workers: Annotated[
        Optional[int],
        typer.Option(
            "--workers",
            help=f"Data loader processes for augmentation (default {default_workers('cuda')} on CUDA, "
            f"{default_workers('cpu')} on CPU).",
        ),
    ] = None,
    init: Annotated[
        Optional[str],
        typer.Option("--init", help="Transfer: start from donor checkpoint DONOR's tensors named by --plan."),
    ] = None,
    plan: Annotated[
        Optional[str], typer.Option("--plan", help="Transfer: reuse plan id (see `reuse-console plan --help`).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="Transfer: freeze (the plan's tensors never change) or finetune (they only start the model)."
        ),
    ] = "finetune",
    recalibrate: Annotated[
        Optional[int],
        typer.Option(
            "--recalibrate",
            help="Transfer: before epoch 1, re-estimate the norms' running statistics on the first N batches of "
            "the training slices (AdaBN), so the donor's statistics fit the new data; in --mode freeze they then "
            "stay at these values.",
            show_default=False,
        ),
    ] = TRAIN_DEFAULTS.recalibrate,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = "rich",
    resume: Annotated[
        Optional[str],
        typer.Option(
            "--resume",
            help="Continue run NAME after its last finished epoch (other options but device, precision, workers, "
            "threads and progress are ignored).",
        ),
    ] = None,
    lab: LabOpt = None,
) -> None:
    from reuse_console.engine.models.registry import parse_arch_config
    from reuse_console.engine.training.train import TrainSpec, resume_training
    from reuse_console.engine.training.train import train as run_training
    from reuse_console.store.errors import UserError
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    use_threads(threads, device)
    the_lab = Lab.from_option(lab)
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        if resume:
            result = resume_training(
                the_lab, resume, device=device, precision=precision, workers=workers, report=report
            )
        else:
            if not data:
                raise UserError("--data is required (a data set id; see `reuse-console ls datasets`)")
            spec = TrainSpec(
                data=data,
                arch=arch or "",  # empty: the donor's with --init, else the default (engine/training/train.py)
                arch_config=parse_arch_config(arch_config),
                input=input_mode,
                output=output_key,
                deep_supervision=deep_supervision,
                depth=depth,
                task=task,
                subjects=subjects,
                epochs=epochs,
                batch=batch,
                lr=lr,
                seed=seed,
                name=name,
                size=size,
                augment=augment,
                init=init,
                plan=plan,
                mode=mode if (init or plan) else None,
                recalibrate=recalibrate,
            )
            result = run_training(
                the_lab, spec, device=device, precision=precision or DEFAULT_PRECISION, workers=workers, report=report
            )
    if progress != "jsonl":
        metrics = result.best_metrics
        score = (
            f"dice_fg {fmt(metrics.get('dice_fg'))}" if "dice_fg" in metrics else f"mse {fmt(metrics.get('mse'), 5)}"
        )
        stderr.print(
            f"run {result.name}: best epoch {result.best_epoch} ({score}); "
            f"checkpoints {result.name} and {result.name}.last"
        )


def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint id (see `reuse-console ls checkpoints`) or .h5 path.")],
    data: Annotated[
        Optional[str], typer.Option("--data", help="Data set id (default: the one it was trained on).")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train, val or all.")] = "val",
    save_predictions: Annotated[
        Optional[Path],
        typer.Option(
            "--save-predictions",
            help="Write {volume}_pred.nii.gz and {volume}_gt.nii.gz here (per volume, e.g. patient001_ED).",
        ),
    ] = None,
    grid: Annotated[
        str,
        typer.Option(
            "--grid",
            help="source: predictions on the source image's own grid and affine (overlay them on the original "
            "in ITK-SNAP); evaluated: the stored slices' grid, with the evaluated image (_image) beside them.",
        ),
    ] = "source",
    per: Annotated[
        str,
        typer.Option(
            "--per",
            help="subject: Dice over all of a subject's volumes at once (the paper's; scans use it); volume: "
            "each volume (frame) scored apart, as ACDC results are reported, with ED/ES and per-subject means.",
        ),
    ] = "subject",
    empty: Annotated[
        str,
        typer.Option(
            "--empty",
            help="one: empty reference and empty prediction = 1, a prediction = 0 (MONAI compute_dice "
            "ignore_empty=False); ignore: a class with an empty reference is left out of the means "
            "(MONAI ignore_empty=True).",
        ),
    ] = "one",
    batch: Annotated[int, typer.Option("--batch", help="Slices per forward pass.")] = 32,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = DEFAULT_PRECISION,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Score a checkpoint: seg Dice per class (class 0 included) per subject over all of its slices (3D), mean and std over subjects; ae MSE and PSNR.

    Dice rules (--empty one): empty reference and empty prediction = 1.0; empty reference with a prediction = 0.0; classes the data set does not label are shown as absent, not 0. --per volume scores each frame apart (ED and ES means). --save-predictions writes the predicted and reference label maps per volume as NIfTI with the source image's affine (--grid source) for ITK-SNAP, 3D Slicer or MONAI.

    Example: reuse-console eval unet-seg-acdc --json
    """
    from reuse_console.engine.evaluation.evaluate import evaluate_checkpoint
    from reuse_console.store.lab import Lab

    use_threads(threads, device)
    result = evaluate_checkpoint(
        Lab.from_option(lab),
        checkpoint,
        data=data,
        split=split,
        device=device,
        precision=precision,
        batch=batch,
        save_predictions=save_predictions,
        per=per,
        empty=empty,
        grid=grid,
    )
    if json_out:
        emit_json(result)
        return
    _print_eval(result)


def _print_eval(result: dict[str, Any]) -> None:
    title = f"{result['checkpoint']} on {result['data']} ({result['split']}, {len(result['subjects'])} subjects)"
    table = Table(title=title, title_justify="left")
    if result["task"] == "ae":
        table.add_column("mse", justify="right")
        table.add_column("psnr (dB)", justify="right")
        table.add_row(fmt(result["mse"], 5), fmt(result["psnr"], 2))
        stdout.print(table)
        return
    if "dice" not in result:  # unlabelled data: predictions only
        stderr.print(f"{result['data']} has no labels: no Dice, predictions written")
    else:
        phases = result.get("by_phase") or {}
        table.add_column("class")
        table.add_column("dice mean", justify="right")
        table.add_column("std", justify="right")
        for phase in phases:
            table.add_column(phase, justify="right")
        for cls in result["classes"]:
            if cls in result["absent"]:
                table.add_row(cls, "absent", "", *("" for _ in phases))
            else:
                by_phase = (fmt(phases[p][cls]) for p in phases)
                table.add_row(cls, fmt(result["dice"][cls]), fmt(result["dice_std"][cls]), *by_phase)
        fg = (f"[bold]{fmt(phases[p]['dice_fg'])}[/bold]" for p in phases)
        table.add_row("[bold]foreground mean[/bold]", f"[bold]{fmt(result['dice_fg'])}[/bold]", "", *fg)
        if result.get("dice_per") == "volume":
            table.caption = f"Dice per volume (frame), phases beside; empty={result['empty']}"
        stdout.print(table)
    for path in result.get("files", [])[:2]:
        stderr.print(f"wrote {path}")
    if len(result.get("files", [])) > 2:
        stderr.print(f"... and {len(result['files']) - 2} more NIfTI files")


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train)
    app.command("eval")(evaluate)
