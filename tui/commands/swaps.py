"""`swap` and `scan`: replace recipient tensors with a donor's and measure Dice, without retraining."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from reuse_console.engine.core.device import DEFAULT_PRECISION, use_threads
from reuse_console.store.errors import UserError

from ..options import DataOpt, DeviceOpt, JsonOpt, LabOpt, NameOpt, PrecisionOpt, ProgressOpt, ThreadsOpt
from ..output import emit_json, sigterm_as_interrupt, stderr, stdout
from ..render.results import render_pairs, render_scan, render_swap

Recipient = Annotated[
    str, typer.Argument(help="Recipient checkpoint id (a seg model; see `reuse-console ls checkpoints`).")
]
Donor = Annotated[
    str,
    typer.Argument(
        help="Donor checkpoint id (same architecture and tensor shapes, any task); or init: the recipient run's own "
        "initial weights (re-initialisation: is a layer reusable, or just robust to a reset?); or random:SEED: a "
        "fresh draw of the recipient's architecture."
    ),
]
BatchOpt = Annotated[int, typer.Option("--batch", help="Validation slices per forward pass.")]
SplitOpt = Annotated[str, typer.Option("--split", help="Subjects to evaluate on: val, train or all.")]
RecalibrateOpt = Annotated[
    Optional[int],
    typer.Option(
        "--recalibrate",
        help="Also evaluate with the norms' running statistics re-estimated after the swap (AdaBN) on the first N "
        "batches of the data set's training subjects (train-mode norms, cumulative average, no weight update); raw "
        "and recalibrated Dice are stored side by side. Answers: is a swap bad only because the statistics no "
        "longer fit? E.g. --recalibrate 8.",
        show_default=False,
    ),
]
RecalibrateScopeOpt = Annotated[
    str,
    typer.Option(
        "--recalibrate-scope",
        help="all: every norm with running statistics (the recalibrated baseline is shown too); downstream: only "
        "the norms the swapped tensor affects.",
    ),
]
ConfirmOpt = Annotated[
    Optional[float],
    typer.Option(
        "--confirm",
        help="With --precision bf16/fp16: re-evaluate in exact fp32 the baseline and every variant whose worst "
        "foreground drop lies within this margin of a --confirm-at threshold, so a plan from the scan is the fp32 "
        "scan's plan at bf16 speed (both values are stored). E.g. --confirm 0.02 (bf16 moves Dice by up to ~0.02).",
        show_default=False,
    ),
]
ConfirmAtOpt = Annotated[
    str,
    typer.Option(
        "--confirm-at",
        help="The plan thresholds (--max-dice-drop values) the confirmation protects, separated by commas.",
    ),
]
AlignOpt = Annotated[
    bool,
    typer.Option(
        "--align",
        help="First reorder the donor's channels to match the recipient's (weight matching, in memory, checked to "
        "keep the donor's outputs within 1e-5 on the slices), so a donor trained from another seed swaps channel "
        "for channel; `reuse-console align` stores such a donor instead.",
    ),
]
EmptyOpt = Annotated[
    str,
    typer.Option(
        "--empty",
        help="Dice of a class whose reference is empty in a subject: one (1 if nothing is predicted either, 0 if "
        "something is; MONAI compute_dice ignore_empty=False, the default and the stored scans' rule) or ignore "
        "(left out of the means; MONAI ignore_empty=True). Kept in the scan's options; plans read it.",
    ),
]
PerOpt = Annotated[
    str,
    typer.Option(
        "--per",
        help="The Dice unit: subject (all of a subject's volumes at once, the paper's) or volume (each frame, e.g. "
        "ACDC's ED and ES, scored apart and averaged as units, as `eval --per volume`).",
    ),
]
CacheMbOpt = Annotated[
    Optional[float],
    typer.Option(
        "--cache-mb",
        help="Keep the scan's activations (cached ones plus a variant's re-run) within this many MB: a probe "
        "measures their peak, and the validation batches are split to the largest size that fits (the chosen size "
        "is kept in the scan's options; Dice does not change; --recalibrate's batches keep --batch). E.g. --cache-mb 256.",
        show_default=False,
    ),
]
StackOpt = Annotated[
    Optional[int],
    typer.Option(
        "--stack",
        help="Evaluate up to K variants of one layer together in one pass, stacked along the batch (torch.func.vmap): "
        "a small model then fills a large GPU. Default: 8 on a GPU (halved if memory runs out), 1 (one at a time) on "
        "CPU, where stacking measured no faster. fp32 Dice are the same either way, up to pixels whose two best "
        "scores tie within fp32 rounding. E.g. --stack 4.",
        show_default=False,
    ),
]
FullForwardOpt = Annotated[
    bool,
    typer.Option("--full-forward", help="Run the whole model per variant (no partial re-execution); for checking."),
]


def swap(
    recipient: Recipient,
    donor: Donor,
    data: DataOpt,
    layers: Annotated[
        str,
        typer.Option("--layers", help="Layers: numbers and ranges (1-5,9), names (head, up1), module paths, or all."),
    ],
    kinds: Annotated[
        str,
        typer.Option(
            "--kinds",
            help="Kinds: RM RV RW RB (BN running mean/var, weight, bias), W B (conv weight/bias), bn, conv or all; comma-separated.",
        ),
    ],
    alpha: Annotated[
        float,
        typer.Option("--alpha", help="Interpolation: tensor = (1-alpha)*recipient + alpha*donor; 1 swaps, 0 keeps."),
    ] = 1.0,
    name: NameOpt = None,
    batch: BatchOpt = 32,
    split: SplitOpt = "val",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = DEFAULT_PRECISION,
    threads: ThreadsOpt = None,
    full_forward: FullForwardOpt = False,
    recalibrate: RecalibrateOpt = None,
    recalibrate_scope: RecalibrateScopeOpt = "all",
    align: AlignOpt = False,
    empty: EmptyOpt = "one",
    per: PerOpt = "subject",
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Swap some recipient tensors for the donor's and compare Dice per class with the unswapped baseline.

    All the named (layer, kind) tensors change at once, in place, and are restored exactly afterwards; Dice is computed per subject over all of its validation slices (3D) and averaged. The result is kept in the lab as a one-variant scan (`reuse-console show NAME`).

    Example: reuse-console swap unet-seg unet-ae --data acdc --layers 1-5 --kinds RM,RV
    """
    from reuse_console.engine.swaps.swap_lab import run_swap
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    use_threads(threads, device)
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        result = run_swap(
            Lab.from_option(lab),
            recipient,
            donor,
            data,
            layers=layers,
            kinds=kinds,
            alpha=alpha,
            precision=precision,
            device=device,
            name=name,
            batch=batch,
            split=split,
            partial=not full_forward,
            recalibrate=recalibrate,
            recalibrate_scope=recalibrate_scope,
            align=_aligner(align),
            empty=empty,
            per=per,
            report=report,
        )
    out = result.to_json()
    out["swap"] = result.options.get("swap", {})
    if json_out:
        emit_json(out)
        return
    if progress == "jsonl":
        return
    stdout.print(render_swap(result))
    stderr.print(f"stored as scan {result.name} ({result.seconds:.1f} s)")


def scan(
    data: DataOpt,
    recipient: Annotated[Optional[str], typer.Argument(help="Recipient checkpoint id (or give --pairs).")] = None,
    donor: Annotated[
        Optional[str],
        typer.Argument(help="Donor: a checkpoint id, init or random:SEED (see `swap --help`); or give --pairs."),
    ] = None,
    pairs: Annotated[
        Optional[str],
        typer.Option(
            "--pairs",
            help="Several recipient:donor pairs (e.g. two seeds: seg-s0:ae-s0,seg-s1:ae-s1), each scanned and stored "
            "as its own scan (NAME-1, NAME-2 ... with --name); the summary shows the mean and spread over pairs. "
            "Then: plan --scan A --scan B --across all|mean.",
            show_default=False,
        ),
    ] = None,
    layers: Annotated[str, typer.Option("--layers", help="Layers to scan: all, numbered, 1-5,9, head ...")] = "all",
    kinds: Annotated[
        str, typer.Option("--kinds", help="Kinds to scan: all, bn, conv, or a list such as RM,RV,W.")
    ] = "all",
    alphas: Annotated[
        str,
        typer.Option(
            "--alphas", help="Interpolation factors: 1 (the paper's swap) or a list such as 0,0.25,0.5,0.75,1."
        ),
    ] = "1",
    name: NameOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a killed scan (same options; --name if you gave one), keeping its finished variants.",
        ),
    ] = False,
    batch: BatchOpt = 32,
    split: SplitOpt = "val",
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = DEFAULT_PRECISION,
    threads: ThreadsOpt = None,
    full_forward: FullForwardOpt = False,
    recalibrate: RecalibrateOpt = None,
    recalibrate_scope: RecalibrateScopeOpt = "all",
    confirm: ConfirmOpt = None,
    confirm_at: ConfirmAtOpt = "0.05",
    align: AlignOpt = False,
    empty: EmptyOpt = "one",
    per: PerOpt = "subject",
    cache_mb: CacheMbOpt = None,
    stack: StackOpt = None,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
    lab: LabOpt = None,
) -> None:
    """Swap every single (layer, kind[, alpha]) tensor in turn and measure Dice per class: the paper's experiment 1.

    Each variant changes one recipient tensor towards the donor's, is evaluated on the validation subjects and restored. The fast path runs each batch once through the unchanged model and re-runs only the layers after the changed one from cached activations (torch.fx; models that do not trace fall back to a full forward). fp32 gives the naive loop's Dice; bf16 is faster on CPUs with bf16 support and GPUs; add --confirm 0.02 to make the plan decisions exact anyway.

    Stored as scans/NAME.h5 (default name RECIPIENT-vs-DONOR): baseline and per-variant Dice per class and subject. A killed scan keeps its finished variants: rerun the same command with --resume.

    Example: reuse-console scan unet-seg unet-ae --data acdc --kinds RM,RV,W --alphas 0,0.5,1
    """
    from reuse_console.engine.swaps.scan_lab import run_scan
    from reuse_console.engine.swaps.swap import parse_alphas
    from reuse_console.store.lab import Lab

    from ..progress import make_reporter

    values = parse_alphas(alphas)
    targets = scan_targets(recipient, donor, pairs)
    pair_set = ",".join(f"{r}:{d}" for r, d in targets) if len(targets) > 1 else None
    use_threads(threads, device)
    results = []
    with sigterm_as_interrupt(), make_reporter(progress) as report:
        for i, (one_recipient, one_donor) in enumerate(targets, start=1):
            results.append(
                run_scan(
                    Lab.from_option(lab),
                    one_recipient,
                    one_donor,
                    data,
                    layers=layers,
                    kinds=kinds,
                    alphas=values,
                    precision=precision,
                    device=device,
                    name=f"{name}-{i}" if name and len(targets) > 1 else name,
                    resume=resume,
                    batch=batch,
                    split=split,
                    partial=not full_forward,
                    recalibrate=recalibrate,
                    recalibrate_scope=recalibrate_scope,
                    pairs=pair_set,
                    confirm=confirm,
                    confirm_at=confirm_at,
                    align=_aligner(align),
                    empty=empty,
                    per=per,
                    cache_mb=cache_mb,
                    stack=stack,
                    report=report,
                )
            )
    if len(results) > 1:
        if json_out:
            emit_json({"pairs": [r.to_json() for r in results]})
        elif progress != "jsonl":
            stdout.print(render_pairs(results))
            stderr.print(f"stored as scans {', '.join(r.name for r in results)}")
        return
    (result,) = results
    if json_out:
        emit_json(result.to_json())
        return
    if progress == "jsonl":
        return
    stdout.print(render_scan(result))
    rate = len(result.variants) / result.seconds if result.seconds > 0 else float("nan")
    stderr.print(
        f"stored as scan {result.name}: {len(result.variants)} variants in {result.seconds:.1f} s "
        f"({rate:.2f}/s, {result.engine})"
    )


def _aligner(align: bool) -> Any:
    """The engine's in-memory aligner for --align (None without it); imported only when asked for."""
    if not align:
        return None
    from reuse_console.engine.compare.align_states import aligned_donor

    return aligned_donor


def scan_targets(recipient: str | None, donor: str | None, pairs: str | None) -> list[tuple[str, str]]:
    """The (recipient, donor) pairs to scan: the two arguments, or --pairs R:D,R:D."""
    if pairs is None:
        if not recipient or not donor:
            raise UserError("give RECIPIENT DONOR, or --pairs R:D,R:D")
        return [(recipient, donor)]
    if recipient or donor:
        raise UserError("give RECIPIENT DONOR or --pairs, not both")
    out = []
    for item in (p.strip() for p in pairs.split(",")):
        r, sep, d = item.partition(":")
        if not sep or not r or not d:
            raise UserError(f"--pairs item {item!r}: write RECIPIENT:DONOR, pairs separated by commas")
        out.append((r, d))
    if len(out) < 2:
        raise UserError("--pairs needs at least two RECIPIENT:DONOR pairs (one pair: give them as arguments)")
    return out


def register(app: typer.Typer) -> None:
    app.command("swap")(swap)
    app.command("scan")(scan)
