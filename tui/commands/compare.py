"""`rmse` and `bn`: compare models' tensors without running them."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from reuse_console.engine.core.device import use_threads

from ..options import JsonOpt, LabOpt, NameOpt, ThreadsOpt
from ..output import emit_json, stderr, stdout
from ..render.results import render_comparison


def rmse(
    checkpoints: Annotated[list[str], typer.Argument(help="Two or more checkpoint ids of one architecture.")],
    layers: Annotated[str, typer.Option("--layers", help="Layers: all, 1-5,9, head ...")] = "all",
    kinds: Annotated[str, typer.Option("--kinds", help="Kinds: all, bn, conv, or a list such as RM,RV,W.")] = "all",
    name: NameOpt = None,
    align: Annotated[
        bool,
        typer.Option(
            "--align",
            help="First align every later checkpoint to the first (weight matching, in memory; `reuse-console "
            "align` stores one), so models trained from different seeds compare channel to channel.",
        ),
    ] = False,
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """RMSE between the models' tensors per layer and kind, for every pair (the paper's figures 6, 10-12).

    RMSE(a, b) = sqrt(mean((a - b)^2)) over a tensor's elements; "rel" divides it by the RMS of the first model's tensor, so layers of different scale compare. With N checkpoints all N(N-1)/2 pairs are computed. Stored as comparisons/NAME.h5 (default rmse-A-B...).

    Example: reuse-console rmse unet-seg unet-ae --kinds RM,RV,W
    """
    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.store.lab import Lab

    use_threads(threads, "cpu")  # tensors are compared on the CPU
    comp = run_rmse(Lab.from_option(lab), checkpoints, layers=layers, kinds=kinds, name=name, align=align)
    if json_out:
        emit_json(comp.to_json())
        return
    stdout.print(render_comparison(comp))
    stderr.print(f"stored as comparison {comp.name}")


def bn(
    recipient: Annotated[str, typer.Argument(help="Recipient checkpoint id.")],
    donor: Annotated[str, typer.Argument(help="Donor checkpoint id (same architecture).")],
    threads: ThreadsOpt = None,
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """BN scale and shift per layer, and what swapping one BN tensor does to them (the paper's theory).

    It reads every norm with running statistics (BatchNorm, InstanceNorm with track_running_stats); GroupNorm, LayerNorm and InstanceNorm without them have no fixed scale and shift, and one line after the table says how many were left out.

    In eval mode BN is y = s*x + t per channel, s = RW/sqrt(RV+eps), t = RB - RM*s. For each single-kind replacement of a recipient tensor by the donor's, the table shows the change of s as a ratio s'/s (geometric mean over channels; RM and RB leave s alone) and the change of t as the mean |t' - t|.

    Example: reuse-console bn unet-seg unet-ae --json
    """
    from reuse_console.engine.compare.bn import run_bn
    from reuse_console.store.lab import Lab

    use_threads(threads, "cpu")
    study = run_bn(Lab.from_option(lab), recipient, donor)
    rows = [layer.summary() for layer in study.layers]
    if json_out:
        emit_json({"recipient": recipient, "donor": donor, "layers": rows, "note": study.note})
        return
    table = Table(
        title=f"BN scale s and shift t of {recipient} (r) and {donor} (d); swapping one tensor r <- d",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
    )
    for col in ("layer", "s r", "s d", "t r", "t d", "RV s'/s", "RW s'/s", "RM |dt|", "RV |dt|", "RW |dt|", "RB |dt|"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for row in rows:
        swaps = row["swaps"]
        table.add_row(
            str(row["layer"]),
            _g(row["s"]["recipient"]["mean"]),
            _g(row["s"]["donor"]["mean"]),
            _g(row["t"]["recipient"]["mean"]),
            _g(row["t"]["donor"]["mean"]),
            _g(_get(swaps, "RV", "scale_ratio_geomean")),
            _g(_get(swaps, "RW", "scale_ratio_geomean")),
            *(_g(_get(swaps, k, "shift_diff_mean_abs")) for k in ("RM", "RV", "RW", "RB")),
        )
    stdout.print(table)
    stdout.print("s, t: channel means; s'/s: geometric mean over channels; |dt|: mean |t' - t| (--json: min/max too)")
    if study.note:
        stdout.print(study.note)


def _get(swaps: dict[str, Any], kind: str, field: str) -> float | None:
    return swaps.get(kind, {}).get(field)


def _g(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if 0.01 <= abs(value) < 100 or value == 0 else f"{value:.0e}"


def register(app: typer.Typer) -> None:
    app.command("rmse")(rmse)
    app.command("bn")(bn)
