"""`cka`: functional similarity of models, layer by layer, from their activations."""

from __future__ import annotations

from typing import Annotated

import typer

from reuse_console.engine.core.device import DEFAULT_PRECISION, use_threads

from ..options import DataOpt, DeviceOpt, JsonOpt, LabOpt, NameOpt, PrecisionOpt, ProgressOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout


def cka(
    checkpoints: Annotated[
        list[str], typer.Argument(help="Two or more checkpoint ids of one architecture (widths may differ).")
    ],
    data: DataOpt,
    layers: Annotated[str, typer.Option("--layers", help="Layers: all, numbered, 1-5,9, head ...")] = "all",
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="pooled: one sample per slice, its activation averaged over the image (p = channels). "
            "pixels: --pixels random positions per slice, each a sample of its C channel values.",
        ),
    ] = "pooled",
    pixels: Annotated[int, typer.Option("--pixels", help="With --features pixels: positions drawn per slice.")] = 64,
    split: Annotated[str, typer.Option("--split", help="Subjects to compare on: val, train or all.")] = "val",
    batch: Annotated[int, typer.Option("--batch", help="Slices per forward pass.")] = 32,
    memory_mb: Annotated[
        float,
        typer.Option(
            "--memory-mb",
            help="Most memory for the statistics and one batch's features; beyond it the layers are split "
            "into groups, one pass over the data each.",
        ),
    ] = 512.0,
    name: NameOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = DEFAULT_PRECISION,
    threads: ThreadsOpt = None,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Linear and debiased CKA between the models' activations after each layer, for every pair.

    Each layer's activation is read after its norm (the conv's output for a layer without one, such as up1 or head), on the validation slices of --data at the size the models were trained at (3D models: blocks). CKA (Kornblith et al. 2019) is 1 when two layers compute the same features up to a rotation and a scale, whatever the order of their channels, and can compare layers of different widths. Debiased CKA uses the unbiased HSIC estimator (Song et al. 2012), for few samples; it needs at least 4.

    A sample is one slice and its features the activation averaged over the image (--features pooled, the default), or --pixels random positions per slice (--features pixels). Statistics are summed batch by batch (channels^2 per pair and layer), so memory does not grow with the number of slices.

    Stored as comparisons/NAME.h5 (default cka-A-B...), beside RMSE comparisons; `show NAME` prints it again.

    Example: reuse-console cka unet-seg-acdc unet-ae-acdc unet-seg-t1 --data acdc --layers numbered
    """
    from reuse_console.engine.compare.cka_lab import run_cka
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter
    from ..render.similarity import render_similarity

    use_threads(threads, device)
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        sim = run_cka(
            Lab.from_option(lab),
            checkpoints,
            data,
            layers=layers,
            features=features,
            pixels=pixels,
            split=split,
            batch=batch,
            device=device,
            precision=precision,
            memory_mb=memory_mb,
            name=name,
            report=report,
        )
    if json_out:
        emit_json(sim.to_json())
        return
    if progress == "jsonl":
        return
    stdout.print(render_similarity(sim))
    stderr.print(f"stored as comparison {sim.name}")


def register(app: typer.Typer) -> None:
    app.command("cka")(cka)
