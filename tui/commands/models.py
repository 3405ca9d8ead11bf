"""`layers` (a model's layer index) and `ckpt import|export` (checkpoints in and out of the lab)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

from ..options import JsonOpt, LabOpt
from ..output import emit_json, stderr, stdout

if TYPE_CHECKING:
    from reuse_console.engine.models.layers import LayerIndex

ARCH_HELP = "unet | pspnet | package.module:ClassName (a user CNN class taking its config as keyword arguments)."
ArchConfigOpt = Annotated[
    Optional[str],
    typer.Option(
        "--arch-config",
        help="JSON object of architecture options, or @FILE. unet: base_width (32), conv_bias (true); "
        "pspnet: width (1.0), conv_bias (true), dropout (0.1), backbone_weights (a local resnet18 .pt). "
        "Example: '{\"base_width\": 16}'.",
        show_default=False,
    ),
]

ckpt_app = typer.Typer(
    name="ckpt",
    help="Bring checkpoints into the lab from .pt/.safetensors state dicts, and export them back out.",
    no_args_is_help=True,
)


def layers(
    ref: Annotated[
        Optional[str], typer.Argument(help="Checkpoint id (or path to a checkpoint .h5).", show_default=False)
    ] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help=f"Index a fresh model instead: {ARCH_HELP}")] = None,
    arch_config: ArchConfigOpt = None,
    in_channels: Annotated[
        Optional[int],
        typer.Option(
            "--in-channels",
            help="Input channels of a fresh --arch model (default: 1, or what its first conv takes when its config fixes it).",
            show_default=False,
        ),
    ] = None,
    out_channels: Annotated[int, typer.Option("--out-channels", help="Output channels of a fresh --arch model.")] = 4,
    size: Annotated[
        int,
        typer.Option(
            "--size",
            help="Side of the dummy input for the forward pass, on every spatial axis the first conv has "
            "(a 3D model gets SIZE^3; UNet: a multiple of 16).",
        ),
    ] = 64,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List a model's layers: Conv+norm layers numbered 1..N in forward execution order (UNet 18,
    PSPNet 25), then convs with no norm after them (up1..up4, head) and norms after no conv, with
    kinds and shapes, and how many layers each norm type (BatchNorm, InstanceNorm, GroupNorm,
    LayerNorm) ends. A model mixing norm types gets a norm column; --json gives every layer's
    `norm` (the norm's class name, null when the conv has none).

    Kinds: RM RV (the norm's running mean and var, where it keeps them), RW RB (its weight and
    bias, where it is affine), W and B (conv weight, bias).

    Examples: `reuse-console layers seg-unet`, `reuse-console layers --arch pspnet --json`.
    """
    from reuse_console.engine.models.adapters import first_conv
    from reuse_console.engine.models.layers import LayerIndex
    from reuse_console.engine.models.layout import spatial_dims
    from reuse_console.engine.models.registry import (
        build_model,
        default_config,
        load_model,
        model_in_channels,
        parse_arch_config,
    )

    if (ref is None) == (arch is None):
        raise UserError("give a checkpoint id or --arch NAME (one of them)")
    if ref is not None:
        if arch_config:
            raise UserError("--arch-config goes with --arch; a checkpoint carries its own config")
        model, meta = load_model(Lab.from_option(lab), ref)
        title = f"{ref}: {meta.arch}"
        channels = model_in_channels(meta.arch_config)
    else:
        assert arch is not None  # a checkpoint id or --arch, exactly one (checked above)
        overrides = parse_arch_config(arch_config)
        channels = int(overrides.pop("in_channels", in_channels or 1))
        outputs = int(overrides.pop("out_channels", out_channels))
        model = build_model(arch, default_config(arch, channels, outputs, **overrides))
        if in_channels is None:  # e.g. torchvision's segmentation models take 3 whatever is asked
            conv = first_conv(model, (size,) * (spatial_dims(model) or 2))
            channels = int(conv.in_channels) if conv is not None else channels
        title = f"{arch} (fresh)"
    index = LayerIndex.from_model(model, channels, size)
    if json_out:
        emit_json(index.to_json())
        return
    stdout.print(_layer_table(f"{title}: {len(index.numbered)} numbered layers", index))
    norms = index.norm_summary()
    if norms.groups:
        found = [
            f"{norm} {count} ({' '.join(kinds) or 'no norm tensors: not affine, no running statistics'})"
            for (norm, kinds), count in norms.groups.items()
        ]
        stdout.print("norms: " + ", ".join(found))
    else:
        stdout.print("norms: none after any conv (layers are W/B only)")
    if norms.unpaired:
        listed = ", ".join(f"{path} ({norm})" for path, norm in norms.unpaired)
        stdout.print(f"norms with no conv right before them (listed by name, not numbered): {listed}")


def _layer_table(title: str, index: LayerIndex) -> Table:
    """One row per layer. The norm type gets a column only when the model mixes them: with one
    type the norms line below names it, and UNet's table stays within 80 columns."""
    mixed = len({layer.norm for layer in index.layers if layer.norm}) > 1
    table = Table(title=title, title_justify="left")
    columns = ("layer", "modules", *(("norm",) if mixed else ()), "kinds", "W shape", "params")
    for col in columns:
        table.add_column(col, justify="right" if col in ("layer", "params") else "left", overflow="fold")
    for layer in index.layers:
        w_shape = "x".join(map(str, layer.shapes.get("W", ()))) or "-"
        norm = (layer.norm or "-",) if mixed else ()
        numel = f"{sum(layer.numel.values()):,}"
        table.add_row(layer.name, " + ".join(layer.modules), *norm, " ".join(layer.kinds), w_shape, numel)
    return table


@ckpt_app.command("import")
def ckpt_import(
    file: Annotated[Path, typer.Argument(help="A plain state dict: FILE.pt (read weights-only) or FILE.safetensors.")],
    arch: Annotated[str, typer.Option("--arch", help=ARCH_HELP)],
    task: Annotated[str, typer.Option("--task", help="seg (segmentation) or ae (auto-encoder).")],
    name: Annotated[str, typer.Option("--name", help="Checkpoint id to store it under.")],
    arch_config: ArchConfigOpt = None,
    data: Annotated[str, typer.Option("--data", help="Data set it was trained on (recorded, not checked).")] = "",
    classes: Annotated[
        Optional[str],
        typer.Option(
            "--classes",
            help="Comma-separated class names, one per output channel (default: background,RV,MYO,LV "
            "for 4 outputs, else class0..).",
            show_default=False,
        ),
    ] = None,
    lab: LabOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Import a state dict as a lab checkpoint, checking every key and shape against --arch.

    Files that would need code to unpickle are refused; in/out channels not given in
    --arch-config are read from the file. Example:
    `reuse-console ckpt import seg.pt --arch unet --task seg --name seg-ext --arch-config '{"base_width": 16}'`
    """
    from reuse_console.engine.models.ckpt_io import import_checkpoint
    from reuse_console.engine.models.registry import parse_arch_config

    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    path, meta = import_checkpoint(
        Lab.from_option(lab),
        file,
        arch=arch,
        task=task,
        name=name,
        arch_config=parse_arch_config(arch_config),
        data=data,
        classes=class_list,
    )
    if json_out:
        emit_json(
            {"id": name, "path": str(path), "arch": meta.arch, "arch_config": meta.arch_config, "task": meta.task}
        )
        return
    stderr.print(f"imported {file} as checkpoint [bold]{name}[/bold] ({meta.arch}, {meta.task}) -> {path}")


@ckpt_app.command("export")
def ckpt_export(
    ref: Annotated[str, typer.Argument(help="Checkpoint id in the lab.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[
        Optional[str],
        typer.Option("--format", help="pt (plain state dict) or safetensors (default: from --out's suffix)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists.")] = False,
    lab: LabOpt = None,
) -> None:
    """Export a checkpoint's state dict, loadable with `torch.load(weights_only=True)` or safetensors.

    Example: `reuse-console ckpt export seg-unet --format safetensors --out seg-unet.safetensors`
    """
    from reuse_console.engine.models.ckpt_io import export_checkpoint

    path = export_checkpoint(Lab.from_option(lab), ref, out, fmt, overwrite=force)
    stderr.print(f"exported checkpoint {ref} -> {path}")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
    app.add_typer(ckpt_app, name="ckpt")
