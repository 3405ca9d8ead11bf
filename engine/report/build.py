"""Reports: the paper's figures and tables from lab objects, written to a folder.

For each id: a scan gives Dice per layer per kind with the baseline (figs 3/4/7/8); a comparison
gives RMSE per layer per kind (figs 6/10-12) and, for two models, BN scale/shift (figs 5/9); an
experiment gives its table (PNG, CSV, Markdown), a bar chart of foreground Dice, and RMSE of the
reused models against the reference per subject count (figs 13/14); a plan gives its layer x kind
map. `index.md` in the folder links everything written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from reuse_console.engine.compare.bn import run_bn
from reuse_console.engine.compare.rmse import read_comparison
from reuse_console.engine.core.events import Message, Reporter, silent
from reuse_console.engine.evaluation.metrics import nanmean
from reuse_console.engine.grids.experiment import load_experiment
from reuse_console.engine.models.layers import KINDS
from reuse_console.engine.report import figures
from reuse_console.engine.report.predictor_figure import predictor_report
from reuse_console.engine.reuse.plans import format_not_reusable, load_plan
from reuse_console.engine.reuse.predict_store import is_predictor
from reuse_console.engine.swaps.overlay import build_overlay, set_members
from reuse_console.engine.swaps.scan_store import load_scan
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

MODE_STYLE = {"finetune": "-", "freeze": "--", "scratch": ":"}


def make_report(lab: Lab, refs: Sequence[str], out: Path, *, report: Reporter = silent) -> list[Path]:
    """Write the figures and tables of every object in `refs` (ids, or kind/id) to folder `out`."""
    if not refs:
        raise UserError("name at least one scan, comparison, plan or experiment to report on")
    entries = [lab.resolve(ref) for ref in refs]
    makers = {
        "scans": scan_report,
        "comparisons": comparison_report,
        "experiments": experiment_report,
        "plans": plan_report,
    }
    for entry in entries:
        if entry.kind not in makers:
            raise UserError(
                f"cannot report on a {entry.kind[:-1]} ({entry.id}): give scans, comparisons, plans or experiments"
            )
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is not a folder: the report writes several files, give a folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections: list[str] = []
    for entry in entries:
        report(Message(f"report {entry.kind[:-1]} {entry.id}"))
        files, text = makers[entry.kind](lab, entry.id, out)
        written += files
        sections.append(text)
        for path in files:
            report(Message(f"wrote {path}"))
    scans = [entry.id for entry in entries if entry.kind == "scans"]
    if scans:
        files, text = overlay_report(lab, scans, out)
        written += files
        sections += [text] if text else []
        for path in files:
            report(Message(f"wrote {path}"))
    index = out / "index.md"
    index.write_text("# reuse-console report\n\n" + "\n".join(sections), encoding="utf-8")
    return [*written, index]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _img(path: Path, alt: str) -> str:
    return f"![{alt}]({path.name})\n"


# -- scans ------------------------------------------------------------------------------------------


def scan_arrays(scan: Any) -> tuple[list[str], list[str], np.ndarray]:
    """Layers (scan order), kinds, and (K, L, C) mean Dice of the full single-tensor swaps."""
    full = [(i, v) for i, v in enumerate(scan.variants) if v.alpha == 1.0 and len(v.keys) == 1]
    if not full:
        raise UserError(f"scan {scan.name!r} has no full (alpha 1) single-tensor swaps to plot")
    layers = list(dict.fromkeys(v.layer for _, v in full))
    kinds = [k for k in KINDS if any(v.kind == k for _, v in full)]
    means = nanmean(scan.dice, axis=1)  # NaN cells: left out under --empty ignore
    out = np.full((len(kinds), len(layers), len(scan.classes)), np.nan)
    for i, v in full:
        out[kinds.index(v.kind), layers.index(v.layer)] = means[i]
    return layers, kinds, out


def scan_report(lab: Lab, ref: str, out: Path) -> tuple[list[Path], str]:
    scan = load_scan(lab, ref)
    layers, kinds, dice = scan_arrays(scan)
    keep = [c for c, p in enumerate(scan.present) if p]
    classes = [scan.classes[c] for c in keep]
    path = figures.dice_per_layer(
        out / f"{scan.name}-dice.png",
        title=f"Swapping one {scan.donor} tensor into {scan.recipient}: Dice on {scan.data} "
        f"({_count(len(scan.subjects), 'subject')})",
        layers=layers,
        kinds=kinds,
        classes=classes,
        dice=dice[:, :, keep],
        baseline=nanmean(scan.baseline, axis=0)[keep],
    )
    return [path], f"## Scan {scan.name}\n\n{_img(path, 'Dice per layer and kind')}"


def overlay_report(lab: Lab, refs: Sequence[str], out: Path) -> tuple[list[Path], str]:
    """The scans in `refs` (with the other scans of their `--pairs` sets) on one axis: donors side
    by side, raw beside recalibrated, pair sets as a mean with a band. Nothing for one plain scan."""
    scans = [load_scan(lab, ref) for ref in refs]
    scans += [s for s in set_members(lab, scans) if s.name not in refs]
    view = build_overlay(scans)
    if len(view.lines) < 2:
        return [], ""
    path = figures.overlay_per_layer(
        out / f"overlay-{scans[0].name}.png",
        title=f"Swapping one tensor into {scans[0].recipient}: foreground Dice on {scans[0].data}, by donor",
        layers=list(view.layers),
        kinds=list(view.kinds),
        lines=list(view.lines),
    )
    legend = "; ".join(f"{line.label}: {', '.join(line.scans)}" for line in view.lines)
    text = f"## Scans together\n\n{_img(path, 'Dice per layer by donor')}\nLines: {legend}.\n"
    return [path], text


# -- comparisons ------------------------------------------------------------------------------------


def comparison_report(lab: Lab, ref: str, out: Path) -> tuple[list[Path], str]:
    entry = lab.resolve(ref, "comparisons")
    if is_predictor(entry.path):
        return predictor_report(entry.path, entry.id, out)
    comp = read_comparison(entry.path, entry.id)
    series = [(f"{comp.models[a]} vs {comp.models[b]}", comp.rmse[p]) for p, (a, b) in enumerate(comp.pairs)]
    files = [
        figures.values_per_layer(
            out / f"{comp.name}-rmse.png",
            title=f"RMSE per layer and kind: {', '.join(comp.models)}",
            layers=comp.layers,
            kinds=comp.kinds,
            series=series,
            ylabel="RMSE",
        )
    ]
    text = f"## Comparison {comp.name}\n\n{_img(files[0], 'RMSE per layer')}"
    if len(comp.models) == 2:
        bn_path = _bn_figure(lab, comp.models[0], comp.models[1], out / f"{comp.name}-bn.png")
        if bn_path is not None:
            files.append(bn_path)
            text += "\n" + _img(bn_path, "BN scale and shift")
    return files, text


def _bn_figure(lab: Lab, recipient: str, donor: str, path: Path) -> Path | None:
    """BN scale/shift of two checkpoints, if both are still in the lab and have BN layers."""
    try:
        layers = run_bn(lab, recipient, donor).layers
    except UserError:
        return None
    labels = [layer.layer for layer in layers]
    scale, shift = {}, {}
    for kind in ("RV", "RW"):
        scale[kind] = np.array([_geomean(layer.ratio.get(kind)) for layer in layers])
    for kind in ("RM", "RV", "RW", "RB"):
        shift[kind] = np.array(
            [float(np.abs(layer.diff[kind]).mean()) if kind in layer.diff else np.nan for layer in layers]
        )
    return figures.bn_scale_shift(
        path, title=f"BN of {recipient} with one tensor taken from {donor}", layers=labels, scale=scale, shift=shift
    )


def _geomean(ratio: np.ndarray | None) -> float:
    if ratio is None:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.abs(ratio))
    logs = logs[np.isfinite(logs)]
    return float(np.exp(logs.mean())) if logs.size else math.nan


# -- experiments ------------------------------------------------------------------------------------


def experiment_report(lab: Lab, ref: str, out: Path) -> tuple[list[Path], str]:
    exp = load_experiment(lab, ref)
    header, rows = exp.table_cells()
    note = (
        f"Dice on {len(exp.subjects)} validation subjects of {exp.target}: mean ± sample std over seeds; "
        f"(brackets) difference to {exp.random_source} with the same training subjects."
    )
    files = [
        figures.table_image(
            out / f"{exp.name}-table.png",
            title=f"Experiment {exp.name} ({exp.status})",
            header=header,
            rows=rows,
            note=note,
        ),
        _write(out / f"{exp.name}-table.csv", exp.table_csv()),
        _write(out / f"{exp.name}-table.md", f"# Experiment {exp.name}\n\n" + exp.table_markdown()),
    ]
    table = exp.table()
    groups = list(dict.fromkeys(r.subjects for r in table))
    labels = list(dict.fromkeys((r.source, r.mode) for r in table))
    series = []
    for source, mode in labels:
        found = {r.subjects: r for r in table if (r.source, r.mode) == (source, mode)}
        mean = np.array([found[g].mean[-1] if g in found else np.nan for g in groups])
        std = np.array([found[g].std[-1] if g in found else np.nan for g in groups])
        series.append((source if mode == "scratch" else f"{source} {mode}", mean, std))
    files.append(
        figures.dice_bars(
            out / f"{exp.name}-dice.png",
            title=f"{exp.name}: foreground Dice on {exp.target} (mean ± std over seeds)",
            groups=[f"{'all' if g is None else g} training subjects" for g in groups],
            series=series,
            ylabel="Dice, mean of foreground classes",
        )
    )
    text = f"## Experiment {exp.name}\n\n" + exp.table_markdown() + "\n" + _img(files[-1], "foreground Dice")
    if exp.rmse is not None:
        for n in groups:
            files.append(_rmse_after_reuse(exp, n, out))
            text += "\n" + _img(files[-1], f"RMSE after reuse, {n} subjects")
    return files, text


def _rmse_after_reuse(exp: Any, subjects: int | None, out: Path) -> Path:
    """Figs 13/14: each row's RMSE against the reference, averaged over seeds, for one subject count."""
    rows = list(dict.fromkeys((c.source, c.mode) for c in exp.cells if c.subjects == subjects))
    sources = list(dict.fromkeys(s for s, _ in rows))
    series, styles = [], []
    for source, mode in rows:
        idx = [i for i, c in enumerate(exp.cells) if (c.source, c.mode, c.subjects) == (source, mode, subjects)]
        values = exp.rmse[idx]
        if np.isnan(values).all():
            continue
        with np.errstate(invalid="ignore"), _quiet():
            mean = np.nanmean(values, axis=0)
        series.append((source if mode == "scratch" else f"{source} {mode}", mean))
        styles.append(
            {"color": figures.PALETTE[sources.index(source) % len(figures.PALETTE)], "ls": MODE_STYLE.get(mode, "-")}
        )
    n = "all" if subjects is None else subjects
    kinds = list(exp.rmse_kinds)
    return figures.values_per_layer(
        out / f"{exp.name}-rmse-n{n}.png",
        title=f"{exp.name}: RMSE of each trained model against {exp.reference} ({n} training subjects, mean over seeds)",
        layers=exp.rmse_layers,
        kinds=kinds,
        series=series,
        styles=styles,
        ylabel="RMSE to reference",
        log=False,
    )  # linear: frozen tensors are exactly 0 against their own donor, which a log axis hides


class _quiet:
    """Silence numpy's "mean of empty slice" warning for layers a kind does not have."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._ctx.__exit__(exc_type, exc, tb)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- plans ------------------------------------------------------------------------------------------


def plan_report(lab: Lab, ref: str, out: Path) -> tuple[list[Path], str]:
    plan = load_plan(lab, ref)
    layers = list(dict.fromkeys(t.layer for t in plan.tensors))
    kinds = [k for k in KINDS if any(t.kind == k for t in plan.tensors)]
    reusable = np.full((len(layers), len(kinds)), np.nan)
    drops = np.full((len(layers), len(kinds)), np.nan)
    for t in plan.tensors:
        li, ki = layers.index(t.layer), kinds.index(t.kind)
        reusable[li, ki] = float(t.reusable)
        if t.dice_drop is not None:
            drops[li, ki] = t.dice_drop
    share = (
        f"{100 * plan.tensor_share():.1f}% of tensors, {100 * plan.element_share():.1f}% of parameter elements reused"
    )
    path = figures.plan_map(
        out / f"{plan.name}-plan.png",
        title=f"Reuse plan {plan.name}: {share}",
        layers=layers,
        kinds=kinds,
        reusable=reusable,
        drops=drops if np.isfinite(drops).any() else None,
    )
    text = f"## Plan {plan.name}\n\nNot reusable: {format_not_reusable(plan) or '(none)'}; {share}.\n\n" + _img(
        path, "reuse plan"
    )
    return [path], text
