"""`ls` and `show`: what is in the lab, and one object's results."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.console import Group, RenderableType
from rich.text import Text

from reuse_console.store.errors import UserError
from reuse_console.store.lab import KINDS, Entry, Lab

from ..options import JsonOpt, LabOpt
from ..output import emit_json, stderr, stdout

KIND_HELP = f"One of: {', '.join(KINDS)} (singular accepted). Default: all."
# A bare id in several kinds: `train --name X` makes checkpoints/X and runs/X; the checkpoint is
# what a user asking for X means, the others are named on stderr.
SHOW_PREFERENCE = ("checkpoints", *(k for k in KINDS if k != "checkpoints"))


def _kind(kind: str | None) -> str | None:
    if kind is None:
        return None
    k = kind.lower()
    if k in KINDS:
        return k
    if f"{k}s" in KINDS:
        return f"{k}s"
    raise UserError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")


def ls(
    kind: Annotated[Optional[str], typer.Argument(help=KIND_HELP, show_default=False)] = None,
    long: Annotated[
        bool, typer.Option("--long", "-l", help="Every summary field and the full UTC creation time.")
    ] = False,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the objects in the lab: one line each (kind, id, local creation time, a short summary)."""
    from ..render.listing import listing, long_listing

    the_lab = Lab.from_option(lab)
    entries = the_lab.entries(_kind(kind))
    if json_out:
        emit_json(
            [
                {"id": e.id, "kind": e.kind, "created": e.created, "summary": e.summary, "error": e.error}
                for e in entries
            ]
        )
        return
    if not entries:
        stdout.print(
            f"The lab {the_lab.root} is empty. Start with `reuse-console demo --quick`, or "
            "`reuse-console data phantom --out phantom/acdc` then `reuse-console data import phantom/acdc "
            "--format acdc --name acdc`."
        )
        return
    if long:
        stdout.print(long_listing(entries, f"lab {the_lab.root}"))
        return
    # where and how many go to stderr: stdout is one line per object (and a path is never cut)
    stderr.print(Text(f"lab {the_lab.root}: {len(entries)} objects", style="dim", overflow="fold"))
    stdout.print(listing(entries, stdout.width), soft_wrap=True)


def show(
    ref: Annotated[str, typer.Argument(help="Object id, or kind/id (runs/X) for one of several objects with that id.")],
    raw: Annotated[
        bool, typer.Option("--raw", help="The file itself: its attributes and HDF5 datasets (shape, dtype).")
    ] = False,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show one object's results: a scan's Dice per layer and kind, a run's epochs, a plan's reused
    tensors, a comparison's RMSE, an experiment's table, a checkpoint's meta and Dice, a data set's splits.

    A bare id that is both a checkpoint and a run (every `train --name X`) shows the checkpoint and
    names the others on stderr; `show runs/X` picks the run.

    Example: reuse-console show seg-vs-ae --json
    """
    the_lab = Lab.from_option(lab)
    entry = the_lab.resolve(ref, prefer=SHOW_PREFERENCE)
    if entry.error:
        raise UserError(f"{entry.kind}/{entry.id}: {entry.error}")
    if "/" not in ref:
        others = [k for k in the_lab.kinds_of(entry.id) if k != entry.kind]
        if others:
            also = " and a ".join(k[:-1] for k in others)
            how = ", ".join(f"`show {k}/{entry.id}`" for k in others)
            stderr.print(f"{entry.id} is also a {also}: {how}", highlight=False, soft_wrap=True)
    if raw:
        from reuse_console.store.inspect import describe

        from ..render.objects import render_raw

        info = {"id": entry.id, "kind": entry.kind, "path": str(entry.path), **describe(entry.path)}
        if json_out:
            emit_json(info)
        else:
            stdout.print(render_raw(info))
        return
    data, view = _read(the_lab, entry)
    if json_out:
        emit_json({"id": entry.id, "kind": entry.kind, "path": str(entry.path), **data})
        return
    from ..render.listing import local_time

    title = Text.assemble((f"{entry.kind[:-1]} {entry.id}", "bold"), (f"  created {local_time(entry.created)}", "dim"))
    stdout.print(Group(title, view))


def _read(lab: Lab, entry: Entry) -> tuple[dict[str, Any], RenderableType]:
    """The object through its engine reader: (its JSON form, its view)."""
    from ..render import objects, results

    kind, path = entry.kind, entry.path
    if kind == "scans":
        from reuse_console.engine.swaps.scan_store import read_scan

        scan = read_scan(path, entry.id)
        return scan.to_json(), results.render_swap(scan) if results.is_swap(scan) else results.render_scan(scan)
    if kind == "plans":
        from reuse_console.engine.reuse.plans import read_plan

        plan = read_plan(path)
        return plan.to_json(), results.render_plan(plan)
    if kind == "experiments":
        from reuse_console.engine.grids.experiment import read_experiment

        exp = read_experiment(path, entry.id)
        return exp.to_json(), results.render_experiment(exp)
    if kind == "comparisons":
        from reuse_console.engine.compare.cka_store import is_cka, read_similarity
        from reuse_console.engine.compare.rmse import read_comparison

        if is_cka(path):
            from ..render.similarity import render_similarity

            sim = read_similarity(path, entry.id)
            return sim.to_json(), render_similarity(sim)
        from reuse_console.engine.reuse.predict_store import is_predictor, read_predictor

        if is_predictor(path):
            from ..render.predictor import render_predictor

            table = read_predictor(path, entry.id)
            return table.to_json(), render_predictor(table)

        comp = read_comparison(path, entry.id)
        return comp.to_json(), results.render_comparison(comp)
    if kind == "runs":
        from reuse_console.store.runs import read_run

        history = read_run(path)
        return objects.run_json(entry.id, history), objects.render_run(entry.id, history)
    if kind == "checkpoints":
        return _checkpoint(lab, entry)
    if kind == "datasets":
        from reuse_console.engine.data.slices import read_dataset_info

        data = read_dataset_info(path, entry.id)
        return data.to_json(), objects.render_dataset(data)
    from reuse_console.store.inspect import describe  # jobs: `reuse-console jobs show` follows them

    info = {"id": entry.id, "kind": kind, "path": str(path), **describe(path)}
    return info, objects.render_raw(info)


def _checkpoint(lab: Lab, entry: Entry) -> tuple[dict[str, Any], RenderableType]:
    """Meta without the tensors, and the layer count from the engine's layer index (a user model
    that is not trusted is not built: its layers are not counted, and show says why)."""
    from reuse_console.engine.reuse.plan_lab import recipient_layers
    from reuse_console.store.checkpoints import meta_dict, read_meta

    from ..render.objects import layer_counts, render_checkpoint

    meta = read_meta(entry.path)
    layers: dict[str, Any] | str
    try:
        found = recipient_layers(lab, f"checkpoints/{entry.id}")
        layers = layer_counts(found[0]) if found else "-"
    except UserError as exc:
        layers = f"not counted: {exc}"
    return {**meta_dict(meta), "layers": layers}, render_checkpoint(meta, layers)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("show")(show)
