"""Option aliases shared by every command, so each option means one thing everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
PrecisionOpt = Annotated[
    str, typer.Option("--precision", help="fp32 (exact), bf16 (autocast; fast on AMX CPUs and GPUs), fp16 (GPU).")
]
NameOpt = Annotated[Optional[str], typer.Option("--name", help="Id to store the result under (default: derived).")]
DataOpt = Annotated[str, typer.Option("--data", help="Data set id in the lab (see `reuse-console ls datasets`).")]
