"""Option aliases shared by every command, so each option means one thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from reuse_console.engine.core.device import CPU_THREADS, PRECISION_NOTES, check_threads

PRECISION_HELP = ", ".join(f"{p} ({note})" for p, note in PRECISION_NOTES.items())

LabOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--lab",
        envvar="REUSE_LAB",
        help="Lab directory (default ./lab, or $REUSE_LAB).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ProgressOpt = Annotated[
    str,
    typer.Option(
        "--progress",
        help="Progress display: rich (a bar on stderr), jsonl (one JSON event per line on stdout), none.",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help=PRECISION_HELP + ".")]
THREADS_HELP = (
    "CPU threads for torch, set before any torch work (a job also gets OMP_NUM_THREADS and MKL_NUM_THREADS). "
    f"Default {CPU_THREADS} on CPU, the safe choice on a busy box: torch's threads wait for each other at every "
    "operation, so one of them pushed off its core by any other process stalls them all (on 2 shared cores, 2 "
    "threads trained 10x slower than 1). Give more on an idle machine with cores to spare. On a GPU the default "
    "is torch's own."
)
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        help=THREADS_HELP,
        show_default=False,
        callback=check_threads,  # a UserError at parse time: one line, exit 2, before anything runs
    ),
]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Id to store the result under (default: derived).")]
DataOpt = Annotated[str, typer.Option("--data", help="Data set id in the lab (see `reuse-console ls datasets`).")]
InputOpt = Annotated[
    str,
    typer.Option(
        "--input",
        help="as-is (the model gets the single MRI channel) or repeat (the channel repeated to the channels the "
        "model's first layer takes, e.g. 3 for an ImageNet-style torchvision model). Stored with the checkpoint: "
        "every later command feeds it the same way.",
    ),
]
OutputOpt = Annotated[
    Optional[str],
    typer.Option(
        "--output",
        help="For a model returning a dict of outputs: the key holding the class scores (default: out).",
        show_default=False,
    ),
]
DepthOpt = Annotated[
    Optional[int],
    typer.Option(
        "--depth",
        help="For a 3D model: slices per sample. Each volume (frame) is cut into blocks of DEPTH consecutive "
        "slices, the last one padded (padding is ignored by the loss and Dice). Default: whole volumes, padded "
        "to the data set's deepest volume rounded up to a multiple of 16. 2D models ignore it.",
        show_default=False,
    ),
]
DeepSupervisionOpt = Annotated[
    bool,
    typer.Option(
        "--deep-supervision/--main-head",
        help="For a model with several heads (a tuple/list of outputs, MONAI DynUNet deep_supervision): train on "
        "every head, weights halving per level (normalised), labels resized to each head; default: only the "
        "full-resolution head, which evaluation and scans always use.",
    ),
]
