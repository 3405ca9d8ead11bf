"""`data phantom` and `data import`: make cardiac MRI volumes, and turn volumes into lab data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..options import JsonOpt, LabOpt, ProgressOpt
from ..output import emit_json, stdout
from ..progress import make_reporter

data_app = typer.Typer(
    help=(
        "Cardiac MRI data: generate the synthetic phantom (`phantom`) and import labelled volumes "
        "into the lab as 2D-slice data sets (`import`)."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
)


PHANTOM_HELP = (
    "Generate a synthetic cardiac MRI phantom as NIfTI files: short-axis stacks from base to apex "
    "with LV cavity (3), myocardium (2) and RV cavity (1), varying anatomy, distractors as bright "
    "as blood, bias field, noise and blur.\n\n"
    "Example: [bold]reuse-console data phantom --preset acdc --subjects 20 --out phantom/acdc[/bold], "
    "then [bold]reuse-console data import phantom/acdc --name acdc[/bold]."
)
IMPORT_HELP = (
    "Import labelled 3D volumes into the lab as a data set of normalised 2D slices. Each volume is "
    "clipped to its 0.5-99.5 percentiles and z-scored, optionally resampled in-plane (bilinear "
    "images, nearest labels) and centre-cropped; the split is by subject (both ACDC frames stay "
    "with their subject). Label names are mapped to background/RV/MYO/LV where they are cardiac. "
    "DICOM (rvsc, dicom) is read with pydicom, rescale slope and intercept applied; RVSC contours are "
    "filled with scikit-image (a pixel is inside when its centre is). A set without labels (RVSC "
    "Test1Set) imports for prediction only. `show DATASET` lists each volume's source files and "
    "geometry.\n\n"
    "Example: [bold]reuse-console data import phantom/acdc --format acdc --name acdc --size 128 "
    "--spacing 1.6 --val-subjects 5[/bold]"
)


@data_app.command("phantom", help=PHANTOM_HELP)
def phantom(
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Folder to write (must be new or empty). Default: phantom/<preset>.", show_default=False
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help="acdc (cine: RV, MYO, LV labelled; ED+ES), t1 (T1 map: MYO only; one frame), rvsc (cine: RV only).",
        ),
    ] = "acdc",
    subjects: Annotated[int, typer.Option("--subjects", help="Number of subjects (patient001...).", min=1)] = 20,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="acdc (patientNNN/ with Info.cfg, frameXX, _gt, _4d), nnunet (nnU-Net v2 raw) or rvsc "
            "(TrainingSet/patientNN/: DICOM per slice and time point, ED/ES i-contours; --preset rvsc).",
        ),
    ] = "acdc",
    seed: Annotated[
        int, typer.Option("--seed", help="Same seed, same subjects (subject i does not depend on --subjects).")
    ] = 0,
    scale: Annotated[
        float,
        typer.Option(
            "--scale", help="Matrix size factor, same field of view (0.5 = half the pixels, for quick tests)."
        ),
    ] = 1.0,
    cine: Annotated[
        bool, typer.Option("--cine/--no-cine", help="acdc layout: also write patientNNN_4d.nii.gz.")
    ] = True,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
) -> None:
    """Generate a synthetic cardiac MRI phantom as NIfTI files."""
    from reuse_console.engine.data.phantom import make_phantom

    target = out if out is not None else Path("phantom") / preset
    with make_reporter(progress) as report:
        made = make_phantom(
            target, preset=preset, subjects=subjects, layout=layout, seed=seed, scale=scale, cine=cine, report=report
        )
    result = {
        "out": str(target),
        "preset": preset,
        "layout": layout,
        "seed": seed,
        "subjects": [
            {"name": s.name, "group": s.group, "frames": [f.number for f in s.frames], "spacing": list(s.spacing)}
            for s in made
        ],
    }
    if json_out:
        emit_json(result)
    elif progress != "jsonl":
        stdout.print(f"wrote {len(made)} {preset} subjects ({layout} layout) to {target}")


@data_app.command("import", help=IMPORT_HELP)
def import_(
    path: Annotated[Path, typer.Argument(help="Folder holding the volumes.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="acdc (patientNNN/Info.cfg, frameXX + _gt), nnunet (dataset.json, imagesTr, labelsTr), "
            "folders (images/ + labels/ with matching names), rvsc (RV Segmentation Challenge: patientNN/"
            "PNNdicom/*.dcm + PNNcontours-manual/*-icontour-manual.txt; ED and ES volumes), dicom (a DICOM "
            "series per subject, label.nii.gz beside it if labelled), or auto.",
        ),
    ] = "auto",
    name: Annotated[
        Optional[str],
        typer.Option("--name", help="Data set id in the lab (default: the folder's name).", show_default=False),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", help="Slices are centre-cropped or padded to SIZE x SIZE pixels.")
    ] = 128,
    spacing: Annotated[
        Optional[float],
        typer.Option(
            "--spacing", help="Resample in-plane to this pixel size in mm first (default: keep).", show_default=False
        ),
    ] = None,
    val_subjects: Annotated[
        Optional[int], typer.Option("--val-subjects", help="Number of validation subjects.", show_default=False)
    ] = None,
    val_fraction: Annotated[
        Optional[float],
        typer.Option("--val-fraction", help="Fraction of subjects for validation (default 0.2).", show_default=False),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the subject split.")] = 0,
    classes: Annotated[
        Optional[str],
        typer.Option(
            "--classes",
            help="folders, dicom: class names by label value, comma-separated (default background,RV,MYO,LV).",
            show_default=False,
        ),
    ] = None,
    lab: LabOpt = None,
    progress: ProgressOpt = "rich",
    json_out: JsonOpt = False,
) -> None:
    """Import labelled 3D volumes into the lab as a data set of normalised 2D slices."""
    from reuse_console.engine.data.importer import import_dataset
    from reuse_console.store.lab import Lab

    the_lab = Lab.from_option(lab)
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    if name is None:
        from reuse_console.engine.data.importer import name_from_path

        name = the_lab.unique_name("datasets", name_from_path(path))
    with make_reporter(progress) as report:
        slices = import_dataset(
            the_lab,
            path,
            fmt=fmt,
            name=name,
            size=size,
            spacing=spacing,
            val_subjects=val_subjects,
            val_fraction=val_fraction,
            seed=seed,
            classes=class_list,
            report=report,
        )
    result = {
        "id": name,
        "path": str(the_lab.path("datasets", name)),
        "subjects": len(slices.subjects),
        "train": slices.split.count("train"),
        "val": slices.split.count("val"),
        "slices": len(slices),
        "size": slices.size,
        "classes": slices.classes,
        "present": slices.present,
        "spacing": list(slices.spacing),
    }
    if json_out:
        emit_json(result)
    elif progress != "jsonl":
        labelled = ", ".join(c for c, p in zip(slices.classes, slices.present) if p)
        stdout.print(
            f"data set {name}: {result['subjects']} subjects ({result['train']} train, {result['val']} val), "
            f"{result['slices']} slices of {slices.size}x{slices.size} at {slices.spacing[0]:.2f} mm; "
            f"classes {labelled}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
