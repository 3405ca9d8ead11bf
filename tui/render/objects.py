"""Rich views of the lab's other objects for `show`: runs (epoch table, status, how to resume),
checkpoints (meta, metrics, layer count), data sets (classes, splits), and any file raw (`--raw`).

The JSON forms next to each view are what `show --json` prints: the same data, machine-readable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..output import command_name, fmt
from .listing import STATUS_STYLE

RESUMABLE = ("lost", "failed", "cancelled")


def _fields(rows: list[tuple[str, Any]]) -> Table:
    """Key/value pairs, keys bold; values fold (a long path or config stays whole, on more lines)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in rows:
        if value not in (None, "", [], {}):
            table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), sort_keys=True)


# -- runs -------------------------------------------------------------------------------------------


def resume_command(run_id: str, status: str) -> str | None:
    """How to continue a run that stopped before its last epoch (None when there is nothing to do)."""
    return f"{command_name()} train --resume {run_id}" if status in RESUMABLE else None


def _value(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def run_json(run_id: str, history: Any) -> dict[str, Any]:
    """A run as `show --json` gives it: meta, status, one dict per finished epoch."""
    columns = list(history.epochs)
    epochs = [{c: _value(history.epochs[c][i]) for c in columns} for i in range(history.n_epochs)]
    return {
        "id": run_id,
        "status": history.status,
        "meta": history.meta,
        "steps": history.n_steps,
        "epochs": epochs,
        "resume": resume_command(run_id, history.status),
    }


def render_run(run_id: str, history: Any) -> RenderableType:
    """What the run is, one row per finished epoch, and its status with what to do next."""
    m, e = history.meta, history.epochs
    head = Text(
        f"{m.get('arch', '?')} {m.get('task', '?')} on {m.get('data', '?')}: {m.get('epochs', '?')} epochs, "
        f"batch {m.get('batch', '?')}, lr {m.get('lr', '?')}, seed {m.get('seed', '?')}, "
        f"{m.get('precision', '?')} on {m.get('device', '?')}"
    )
    present = dict(zip(m.get("classes", []), m.get("present", [])))
    metrics = [("val_dice_fg", "Dice fg")] if "val_dice_fg" in e else []
    metrics += [(c, c.removeprefix("val_dice_")) for c in e if c.startswith("val_dice_") and c != "val_dice_fg"]
    metrics = [(c, label) for c, label in metrics if present.get(label, True)]
    metrics += [(c, label) for c, label in (("val_mse", "MSE"), ("val_psnr", "PSNR")) if c in e]
    table = Table(
        box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), title="* best epoch (the checkpoint)", title_justify="left"
    )
    for col in ("epoch", "loss", *(label for _, label in metrics), "s", "img/s"):
        table.add_column(col, justify="right", no_wrap=True)

    def cell(column: str, i: int, digits: int) -> str:
        return fmt(float(e[column][i]), digits) if column in e else "-"

    for i in range(history.n_epochs):
        best = "*" if "best" in e and e["best"][i] > 0 else " "
        number = int(e["epoch"][i]) if "epoch" in e else i + 1
        cells = [f"{number}{best}", cell("train_loss", i, 4)]
        cells += [cell(c, i, 2 if c == "val_psnr" else 5 if c == "val_mse" else 3) for c, _ in metrics]
        table.add_row(*cells, cell("seconds", i, 1), cell("images_per_s", i, 0))
    status = Text("status ", style="bold").append(history.status, style=STATUS_STYLE.get(history.status, ""))
    status.append(f": {history.n_epochs} of {m.get('epochs', '?')} epochs, {history.n_steps} steps")
    parts: list[RenderableType] = [head, table if history.n_epochs else Text("no epoch finished yet"), status]
    command = resume_command(run_id, history.status)
    if command:
        parts.append(Text(f"continue it: {command}"))
    elif history.status == "running":
        writer = history.writer
        parts.append(Text(f"still training (pid {writer.get('pid', '?')} on {writer.get('host', '?')})"))
    checkpoints = [m.get("checkpoint"), m.get("last_checkpoint")]
    parts.append(Text("checkpoints: " + ", ".join(c for c in checkpoints if c), style="dim"))
    return Group(*parts)


# -- checkpoints ------------------------------------------------------------------------------------


def layer_counts(index: Any) -> dict[str, Any]:
    """How many layers the checkpoint's model has, as the study numbers them."""
    return {
        "numbered": len(index.numbered),
        "unnumbered": [layer.name for layer in index.layers if layer.index is None],
        "tensors": sum(len(layer.kinds) for layer in index.layers),
        "elements": sum(sum(layer.numel.values()) for layer in index.layers),
    }


def render_checkpoint(meta: Any, layers: dict[str, Any] | str) -> RenderableType:
    """Meta (what it is, where from), its layer count, and its validation metrics."""
    extra = meta.extra or {}
    spec = extra.get("spec") or {}
    if isinstance(layers, dict):
        loose = layers["unnumbered"]
        layer_text = f"{layers['numbered']} numbered" + (f" + {len(loose)} more ({', '.join(loose)})" if loose else "")
        layer_text += f"; {layers['tensors']} tensors, {layers['elements']:,} elements"
    else:
        layer_text = layers  # why they could not be counted
    best = extra.get("best") or {}
    transfer = f"{spec['mode']} from {spec['init']} with plan {spec['plan']}" if spec.get("init") else ""
    rows: list[tuple[str, Any]] = [
        ("arch", meta.arch),
        ("config", _compact(meta.arch_config)),
        ("task", meta.task),
        ("data", meta.data),
        ("classes", ", ".join(meta.classes)),
        ("epoch", f"{meta.epoch}" + (f" (best {best['epoch']})" if best.get("epoch") else "")),
        ("seed", meta.seed),
        ("run", meta.run),
        ("size", extra.get("size")),
        ("precision", extra.get("precision")),
        ("transfer", transfer),
        ("imported", extra.get("imported_from")),
        ("layers", layer_text),
    ]
    parts: list[RenderableType] = [_fields(rows)]
    metrics = meta.metrics or {}
    if isinstance(metrics.get("dice"), dict):
        n = metrics.get("subjects")
        split = metrics.get("split", "val")
        parts.append(Text(f"Dice at epoch {meta.epoch} on the {split} subjects" + (f" ({n})" if n else "")))
        table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
        for col in ("class", "mean", "std"):
            table.add_column(col, justify="left" if col == "class" else "right")
        dice, std = metrics["dice"], metrics.get("dice_std") or {}
        for cls in [c for c in meta.classes if c in dice] + [c for c in dice if c not in meta.classes]:
            value = dice[cls]
            table.add_row(cls, "absent" if value is None else fmt(value), fmt(std.get(cls)))
        table.add_row("foreground mean", fmt(metrics.get("dice_fg")), "", style="bold")
        parts.append(table)
    elif "mse" in metrics or "psnr" in metrics:
        parts.append(Text(f"MSE {fmt(metrics.get('mse'), 5)}, PSNR {fmt(metrics.get('psnr'), 2)} dB"))
    return Group(*parts)


# -- data sets --------------------------------------------------------------------------------------


def render_dataset(info: Any) -> RenderableType:
    """Classes (present or not), size and spacing, where it came from, and the subjects per split."""
    classes = ", ".join(c if p else f"{c} (absent)" for c, p in zip(info.classes, info.present))
    source = info.source or {}
    rows: list[tuple[str, Any]] = [
        ("classes", classes),
        ("size", f"{info.size} x {info.size} px"),
        ("spacing", " x ".join(f"{s:g}" for s in info.spacing) + " mm" if info.spacing else ""),
        ("format", source.get("format")),
        ("source", source.get("path")),
    ]
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    for col in ("split", "subjects", "slices", "names"):
        table.add_column(col, justify="left" if col in ("split", "names") else "right", no_wrap=col != "names")
    for split in dict.fromkeys(info.split):
        chosen = [i for i, s in enumerate(info.split) if s == split]
        names = ", ".join(info.subjects[i] for i in chosen)
        table.add_row(split, str(len(chosen)), str(sum(info.slices[i] for i in chosen)), names)
    volumes = getattr(info, "volume_info", None) or []
    return Group(_fields(rows), table, _provenance(volumes)) if volumes else Group(_fields(rows), table)


def _provenance(volumes: list[dict[str, Any]], limit: int = 40) -> RenderableType:
    """Per volume: the source grid (voxels, mm, orientation), the kept box and the files read."""
    table = Table(
        title="volumes: phase, source grid and orientation, kept rows/cols, files (--json: paths, affine)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
    )
    for col in ("volume", "ph", "voxels", "mm", "ori", "kept", "files"):
        table.add_column(col, no_wrap=col != "files", overflow="fold")
    for v in volumes[:limit]:
        where = v.get("placement") or {}
        rows, cols = where.get("rows") or [0, 0, 0], where.get("columns") or [0, 0, 0]
        kinds: dict[str, int] = {}
        for name in (Path(f).name for f in v.get("files") or []):
            ending = name.split(".", 1)[1] if "." in name else "file"
            kinds[ending] = kinds.get(ending, 0) + 1
        table.add_row(
            str(v.get("volume")),
            str(v.get("phase") or "-"),
            "x".join(str(n) for n in where.get("shape") or []),
            "x".join(f"{s:.2g}" for s in v.get("spacing") or []),
            str(v.get("orientation") or ""),
            f"{rows[0]}:{rows[0] + rows[2]}/{cols[0]}:{cols[0] + cols[2]}",
            " ".join(f"{n} {k}" for k, n in kinds.items()),
        )
    if len(volumes) > limit:
        table.add_row(f"... {len(volumes) - limit} more (--json)", "", "", "", "", "", "")
    return table


# -- any file, raw ----------------------------------------------------------------------------------


def render_raw(info: dict[str, Any], limit: int = 40) -> RenderableType:
    """`show --raw`: the file's attributes and its HDF5 datasets with shape and dtype."""
    attrs = Table(title=f"{info['kind'][:-1]} {info['id']}", title_justify="left", show_header=False)
    attrs.add_column("key", style="bold", no_wrap=True)
    attrs.add_column("value", overflow="fold")
    attrs.add_row("path", info["path"])
    for key, value in info["attrs"].items():
        attrs.add_row(key, str(value))
    data = Table(title=f"{info['dataset_count']} datasets", title_justify="left")
    for col in ("path", "shape", "dtype"):
        data.add_column(col, overflow="fold")
    for item in info["datasets"][:limit]:
        data.add_row(item["path"], "x".join(map(str, item["shape"])) or "scalar", item["dtype"])
    if info["dataset_count"] > limit:
        data.add_row(f"... {info['dataset_count'] - limit} more (--raw --json lists up to 200)", "", "")
    return Group(attrs, data)
