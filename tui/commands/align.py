"""`align`: reorder a donor's channels to match a recipient (Git Re-Basin), stored as a new checkpoint."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich import box
from rich.table import Table

from reuse_console.engine.core.device import use_threads

from ..options import DeviceOpt, JsonOpt, LabOpt, NameOpt, ProgressOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout

BatchOpt = Annotated[int, typer.Option("--batch", help="Validation slices per forward pass.")]
SplitOpt = Annotated[
    str, typer.Option("--split", help="Subjects to check (and match activations) on: val, train or all.")
]


def align(
    donor: Annotated[str, typer.Argument(help="Checkpoint whose channels are reordered.")],
    to: Annotated[str, typer.Option("--to", help="Recipient checkpoint to match (same architecture).")],
    data: Annotated[
        Optional[str],
        typer.Option("--data", help="Data set whose validation slices check the result (default: the donor's)."),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="weights (Git Re-Basin weight matching) or activations (channel correlations on the slices).",
        ),
    ] = "weights",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random group order of weight matching.")] = 0,
    name: NameOpt = None,
    batch: BatchOpt = 32,
    split: SplitOpt = "val",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Align DONOR to the recipient: the same function, its channels reordered so its tensors come closest.

    Two models trained from different seeds can hold the same features in another channel order, which makes their raw RMSE large and swaps between them meaningless. The permutation groups (a conv's output channels, the norm after it, every consumer's input channels; residual adds share one, concatenations split one) are found in the model's torch.fx graph; each group's permutation comes from scipy's linear_sum_assignment, swept over the groups in random order until none improves. The result runs both models on the validation slices in float64 and is refused unless every output agrees within 1e-5. It is stored as checkpoint NAME (default DONOR-to-RECIPIENT), usable by rmse, scan, swap and plan like any checkpoint.

    Example: reuse-console align unet-seg-seed2 --to unet-seg-acdc --data acdc --name seed2-aligned
    then:    reuse-console rmse unet-seg-acdc unet-seg-seed2 seed2-aligned
    """
    from reuse_console.engine.compare.align import run_align
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    use_threads(threads, device)
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        result = run_align(
            Lab.from_option(lab),
            donor,
            to,
            data=data,
            name=name,
            method=method,
            seed=seed,
            device=device,
            batch=batch,
            split=split,
            report=report,
        )
    out = result.to_json()
    if json_out:
        emit_json(out)
        return
    if progress == "jsonl":
        return
    stdout.print(_table(out))
    stdout.print(
        f"{out['groups']} groups, {out['moved']} of {out['channels']} channels moved, {out['sweeps']} sweep(s); "
        f"outputs equal the donor's within {out['max_output_difference']:.1e}"
    )
    stderr.print(f"stored as checkpoint {result.name} ({result.seconds:.1f} s)")


def _table(out: dict[str, Any]) -> Table:
    """RMSE to the recipient per layer: the raw donor's, then the aligned one's (W and mean of the BN kinds)."""
    table = Table(
        title=f"RMSE to {out['recipient']}: {out['donor']} raw -> aligned",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
    )
    for col in ("layer", "W raw", "W aligned", "BN raw", "BN aligned"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    rows: dict[str, dict[str, list[float]]] = {}
    for row in out.get("rmse", []):
        part = "W" if row["kind"] == "W" else "BN" if row["kind"] in ("RM", "RV", "RW", "RB") else None
        if part is not None:
            cell = rows.setdefault(str(row["layer"]), {})
            cell.setdefault(f"{part} raw", []).append(row["rmse_raw"])
            cell.setdefault(f"{part} aligned", []).append(row["rmse_aligned"])
    for layer, cell in rows.items():
        values = [cell.get(c) for c in ("W raw", "W aligned", "BN raw", "BN aligned")]
        table.add_row(layer, *("-" if v is None else f"{sum(v) / len(v):.4f}" for v in values))
    return table


def register(app: typer.Typer) -> None:
    app.command("align")(align)
