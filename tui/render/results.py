"""The study's results as rich tables: scans and swaps, plans, experiments (Table 3), RMSE comparisons.

The commands that make these objects print them with these renderers when they finish, and
`reuse-console show` prints a stored one the same way. Values come from the engine's objects
(ScanResult, ReusePlan, Experiment, Comparison); nothing here reads a file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..output import fmt


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# -- scans and swaps --------------------------------------------------------------------------------


def render_scan(result: Any, drops: int = 5) -> RenderableType:
    """Baseline per class; mean foreground Dice per layer and kind (rows per alpha when several);
    then the variants that cost most, with the change per class."""
    base_fg, fg_means = result.fg_means()
    base = result.baseline_mean
    line = "  ".join(f"{c} {fmt(float(b))}" for c, b, p in zip(result.classes, base, result.present) if p)
    head = Text(f"baseline {result.recipient} on {result.data}: {line}  (fg mean {base_fg:.3f}){_rules(result)}")
    parts: list[RenderableType] = [
        head,
        Text(f"mean foreground Dice with one tensor of {result.donor} swapped in (red: drop > 0.05, yellow: > 0.005)"),
        _fg_table(result, base_fg, fg_means),
    ]
    if result.recalibrated is not None:
        recal_base, recal_means = result.fg_means(recalibrated=True)
        n, scope = result.options.get("recalibrate_batches"), result.options.get("recalibrate_scope", "all")
        parts += [
            Text(
                f"recalibrated: norm statistics re-estimated on {n} training batch(es) after each swap "
                f"(scope {scope}; baseline fg mean {recal_base:.3f})"
            ),
            _fg_table(result, recal_base, recal_means),
        ]
    if result.confirmed is not None:
        at = ", ".join(f"{t:g}" for t in result.options.get("confirm_at", []))
        parts.append(
            Text(
                f"confirmed in fp32: the baseline and {int(result.confirmed.sum())} of {len(result.variants)} "
                f"variants (drops within {result.options.get('confirm')} of {at}); largest change "
                f"{result.confirm_change():.4f}"
            )
        )
    worst = result.largest_drops(drops)
    if worst:
        fg = result.foreground
        changes = result.delta
        detail = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
        for col in ("layer", "kind", "alpha", *(result.classes[c] for c in fg), "fg"):
            detail.add_column(col, justify="left" if col in ("layer", "kind") else "right", no_wrap=True)
        for i in worst:
            v = result.variants[i]
            per_class = [f"{changes[i, c]:+.3f}" for c in fg]
            detail.add_row(v.layer, v.kind, f"{v.alpha:g}", *per_class, f"{fg_means[i] - base_fg:+.3f}")
        parts += [Text(f"largest drops: change of mean Dice per class ({_plural(len(worst), 'variant')})"), detail]
    parts.append(Text("per-subject values: add --json, or read the scan file", style="dim"))
    return Group(*parts)


def render_pairs(results: list[Any]) -> RenderableType:
    """Scans of several recipient/donor pairs (e.g. seeds): per layer and kind the mean foreground
    Dice drop over the pairs and its spread (max - min), so a reader sees whether a layer's
    verdict holds across pairs."""
    drops = []
    for result in results:
        base_fg, fg_means = result.fg_means()
        drops.append(base_fg - np.asarray(fg_means))
    stacked = np.stack(drops)  # (P, V)
    mean, spread = stacked.mean(axis=0), stacked.max(axis=0) - stacked.min(axis=0)
    first = results[0]
    kinds = list(dict.fromkeys(v.kind for v in first.variants))
    many_alphas = len({v.alpha for v in first.variants}) > 1
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("layer" + (" @alpha" if many_alphas else ""), no_wrap=True)
    for kind in kinds:
        table.add_column(kind, justify="right", no_wrap=True)
    rows: dict[str, dict[str, str]] = {}
    for v, m, s in zip(first.variants, mean, spread):
        style = "red" if m > 0.05 else "yellow" if m > 0.005 else ""
        text = f"{m:+.3f}±{s / 2:.3f}".replace("0.", ".")  # 10 characters: six kinds fit 80 columns
        row = f"{v.layer} @{v.alpha:g}" if many_alphas else v.layer
        rows.setdefault(row, {})[v.kind] = f"[{style}]{text}[/{style}]" if style else text
    for row, cells in rows.items():
        table.add_row(row, *(cells.get(kind, "") for kind in kinds))
    pairs = ", ".join(f"{r.recipient} <- {r.donor}" for r in results)
    return Group(
        Text(f"{len(results)} pairs on {first.data}: {pairs}"),
        Text("foreground Dice drop per swap: mean over pairs ± half its range (red: > 0.05, yellow: > 0.005)"),
        table,
        Text("a plan from all pairs: plan --scan A --scan B --across all|mean", style="dim"),
    )


def _fg_table(result: Any, base_fg: float, fg_means: Any) -> Table:
    """Layer x kind table of mean foreground Dice (rows per alpha when several), drops coloured."""
    kinds = list(dict.fromkeys(v.kind for v in result.variants))
    many_alphas = len({v.alpha for v in result.variants}) > 1
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("layer" + (" @alpha" if many_alphas else ""), no_wrap=True)
    for kind in kinds:
        table.add_column(kind, justify="right", no_wrap=True)
    rows: dict[str, dict[str, str]] = {}
    for v, value in zip(result.variants, fg_means):
        drop = base_fg - value
        style = "red" if drop > 0.05 else "yellow" if drop > 0.005 else ""
        row = f"{v.layer} @{v.alpha:g}" if many_alphas else v.layer
        rows.setdefault(row, {})[v.kind] = f"[{style}]{fmt(float(value))}[/{style}]" if style else fmt(float(value))
    for row, cells in rows.items():
        table.add_row(row, *(cells.get(kind, "") for kind in kinds))
    return table


def _rules(result: Any) -> str:
    """How Dice was counted, when not the defaults (per subject, --empty one)."""
    notes = ["Dice per volume"] if result.options.get("per") == "volume" else []
    if result.options.get("empty") == "ignore":
        notes.append("classes with an empty reference left out (--empty ignore)")
    return f"  [{'; '.join(notes)}]" if notes else ""


def render_swap(result: Any) -> RenderableType:
    """One swap (a one-variant scan): Dice per class before and after, and the change."""
    out = result.to_json()
    v = out["variants"][0]
    spec = result.options.get("swap", {})
    kinds = ",".join(spec.get("kinds", [])) or v["kind"]
    layers = ", ".join(spec.get("layers", [])) or str(v["layer"])
    title = (
        f"{result.recipient} with {result.donor}'s {kinds} in layers {layers} (alpha {v['alpha']:g}) "
        f"on {result.data}: "
        f"{_plural(len(result.subjects), 'volume' if result.options.get('per') == 'volume' else 'subject')}"
        f"{_rules(result)}"
    )
    recal = "dice_recalibrated" in v
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    cols = ("class", "baseline", "swapped", "delta", *(("recal base", "recal", "delta") if recal else ()))
    for col in cols:
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in result.classes:
        row = [c, fmt(out["baseline"]["dice"][c]), fmt(v["dice"][c]), _delta(v["delta"][c])]
        if recal:
            base, after = out["baseline"]["dice_recalibrated"][c], v["dice_recalibrated"][c]
            row += [fmt(base), fmt(after), _delta(None if base is None or after is None else after - base)]
        table.add_row(*row)
    parts: list[RenderableType] = [Text(title), table]
    if recal:
        n, scope = result.options.get("recalibrate_batches"), result.options.get("recalibrate_scope", "all")
        parts.append(
            Text(f"recal: norm statistics re-estimated on {n} training batch(es) (scope {scope})", style="dim")
        )
    return Group(*parts)


def _delta(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    colour = "red" if value < -0.005 else "green" if value > 0.005 else "dim"
    return f"[{colour}]{value:+.3f}[/{colour}]"


def is_swap(result: Any) -> bool:
    """A stored `swap` (or a swap saved from the console): one variant, shown per class."""
    return len(result.variants) == 1 and ("swap" in result.options or len(result.variants[0].keys) > 1)


# -- plans ------------------------------------------------------------------------------------------


def render_plan(plan: Any) -> RenderableType:
    """The plan as a layer x kind table (reused / not, with the evidence), then the paper's text form."""
    from reuse_console.engine.models.layers import KINDS
    from reuse_console.engine.reuse.plans import format_not_reusable

    kinds = [k for k in KINDS if any(t.kind == k for t in plan.tensors)]
    evidence = "dice drop" if any(t.dice_drop is not None for t in plan.tensors) else "rmse"
    title = Text(f"plan {plan.name}: reused tensors (green) and not (red, x); numbers: {evidence}")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    table.add_column("layer", no_wrap=True)
    for kind in kinds:
        table.add_column(kind, justify="right")
    cells = {(t.layer, t.kind): t for t in plan.tensors}
    for layer in dict.fromkeys(t.layer for t in plan.tensors):
        row = []
        for kind in kinds:
            t = cells.get((layer, kind))
            if t is None:
                row.append("")
                continue
            value = t.dice_drop if evidence == "dice drop" else t.rmse
            text = "-" if value is None else f"{value:.3f}"
            row.append(f"[green]{text}[/green]" if t.reusable else f"[red]{text} x[/red]")
        table.add_row(layer, *row)
    reused = sum(t.reusable for t in plan.tensors)
    return Group(
        title,
        table,
        Text(f"not reusable: {format_not_reusable(plan) or '(none)'}"),
        Text(
            f"reused: {reused} of {len(plan.tensors)} tensors ({100 * plan.tensor_share():.1f}%), "
            f"{100 * plan.element_share():.1f}% of parameter elements"
        ),
    )


# -- experiments ------------------------------------------------------------------------------------


def render_experiment(exp: Any) -> RenderableType:
    """The paper's Table 3: Dice per class, mean, ± std over seeds and (difference to random init),
    one under the other so five classes fit in 80 columns."""
    rows = exp.table_json()
    columns = exp.columns
    n = len(exp.subjects)
    title = Text(f"experiment {exp.name} ({exp.status}): Dice on {exp.target} ({_plural(n, 'validation subject')})")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)  # no edge padding: fits 80 columns
    for col in ("source", "mode", "n", "s"):  # n: training subjects, s: finished seeds (said below the table)
        table.add_column(col, no_wrap=True, justify="left" if col in ("source", "mode") else "right")
    for col in columns:
        table.add_column({"background": "bg", "fg": "mean fg"}.get(col, col), justify="right", no_wrap=True)
    for row in rows:
        cells = [row["source"], row["mode"], str(row["subjects"]), str(row["seeds"])]
        for col in columns:
            lines = [fmt(row["mean"][col])]
            if row["std"][col] is not None:
                lines.append(f"±{row['std'][col]:.3f}")
            if row["diff"][col] is not None:
                diff = f"{row['diff'][col]:+.3f}".replace("0.", ".")  # no leading zero: five classes fit 80 columns
                lines.append(f"({diff}{'*' if row['significant'][col] else ''})")
            cells.append("\n".join(lines))
        table.add_row(*cells)
    parts: list[RenderableType] = [title, table]
    if exp.random_source:
        parts.append(
            Text(
                f"n training subjects, s seeds; mean, ± sample std over seeds, (difference to {exp.random_source} with "
                "the same subjects, paired by seed; *: its 95% t interval over seeds excludes 0; --json gives the "
                "intervals)"
            )
        )
    return Group(*parts)


# -- comparisons ------------------------------------------------------------------------------------


def render_comparison(comp: Any) -> RenderableType:
    """RMSE per layer and kind for every pair; in brackets relative to the first model's RMS."""
    tables: list[RenderableType] = []
    for p, (a, b) in enumerate(comp.pairs):
        tables.append(Text(f"RMSE {comp.models[a]} vs {comp.models[b]} (in brackets: / RMS of {comp.models[a]})"))
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
        table.add_column("layer", no_wrap=True)
        for kind in comp.kinds:
            table.add_column(kind, justify="right")
        for li, layer in enumerate(comp.layers):
            cells = []
            for ki in range(len(comp.kinds)):
                value, rel = comp.rmse[p, li, ki], comp.relative[p, li, ki]
                cells.append("" if value != value else f"{value:.3g} {_rel(rel)}")
            table.add_row(layer, *cells)
        tables.append(table)
    return Group(*tables)


def _rel(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "[dim](-)[/dim]"
    style = "red" if value > 1.0 else "yellow" if value > 0.3 else "dim"
    return f"[{style}]({value:.2f})[/{style}]"
