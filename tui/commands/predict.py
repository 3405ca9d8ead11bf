"""`predict`: does a difference measure (RMSE, aligned RMSE, CKA, BN shift...) predict a scan's Dice drops?"""

from __future__ import annotations

from typing import Annotated

import typer

from reuse_console.engine.core.device import use_threads

from ..options import DeviceOpt, JsonOpt, LabOpt, NameOpt, ProgressOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout

MEASURES_HELP = (
    "all, or some of rmse, relative, aligned-rmse, cka, bn-dt, bn-ds, norm (aligned-rmse and cka run the "
    "models on the scan's slices)."
)


def predict(
    scan: Annotated[str, typer.Argument(help="Scan id: its single-tensor swaps (alpha 1) give the measured drops.")],
    measures: Annotated[str, typer.Option("--measures", help=MEASURES_HELP)] = "all",
    max_dice_drop: Annotated[
        float,
        typer.Option("--max-dice-drop", help="A tensor is reusable when its swap costs at most this (as in plan)."),
    ] = 0.05,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap resamples for rho's 95% interval (0: none).")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    recalibrated: Annotated[
        bool,
        typer.Option(
            "--recalibrated",
            help="Drops from the scan's recalibrated Dice (a scan run with --recalibrate: norm statistics "
            "re-estimated after each swap), against its recalibrated baseline.",
        ),
    ] = False,
    name: NameOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Rank each per-tensor measure against the scan's measured Dice drops: Spearman's rho and AUC.

    The paper infers reusable tensors from a small RMSE and confirms with swaps; this measures how well that works. For every tensor the scan swapped alone, its drop (worst foreground class, as plan judges it) is paired with: raw RMSE to the recipient, relative RMSE, RMSE after aligning the donor's channels (weight matching), linear CKA of the layer's activations, the BN theory's mean |t'-t| and |s'/s-1| of the swap, and the recipient tensor's norm. Per kind and over all tensors: Spearman's rho with a bootstrap 95% interval, and the AUC for "drop <= --max-dice-drop".

    With --recalibrated the drops are those the scan measured after re-estimating the norm statistics (scan --recalibrate): does a measure predict what a swap costs once AdaBN has repaired the statistics?

    Stored as comparisons/NAME.h5 (default predict-SCAN, predict-SCAN-recal with --recalibrated); `show NAME` prints it again, `report NAME` draws it, and `plan --scan SCAN --from MEASURE --threshold X` makes a plan from one measure alone.

    Example: reuse-console predict scan-seg-vs-ae-acdc --measures rmse,aligned-rmse,cka --recalibrated
    """
    from reuse_console.engine.reuse.predict_lab import run_predict
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter
    from ..render.predictor import render_predictor

    use_threads(threads, device)
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        result = run_predict(
            Lab.from_option(lab),
            scan,
            name=name,
            measures=measures,
            max_dice_drop=max_dice_drop,
            resamples=resamples,
            seed=seed,
            recalibrated=recalibrated,
            device=device,
            report=report,
        )
    if json_out:
        emit_json(result.to_json())
        return
    if progress == "jsonl":
        return
    stdout.print(render_predictor(result))
    stderr.print(f"stored as comparison {result.name}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
