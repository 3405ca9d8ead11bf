"""Import a labelled volume collection into the lab as one data set of normalised 2D slices.

Everything is read and checked before anything is written, and the file is written atomically,
so a bad file anywhere (a truncated .nii.gz in the last subject) leaves the lab untouched.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.events import Finished, Message, Progress, Reporter, Started, silent
from reuse_console.engine.data.formats import Volume, VolumeRef, load_volume, map_classes
from reuse_console.engine.data.slices import SliceSet, place_volume, split_subjects, write_slices
from reuse_console.engine.data.source_grid import Placement
from reuse_console.engine.data.sources import read_source
from reuse_console.engine.data.volumes import IGNORE
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name


def name_from_path(path: Path | str) -> str:
    """A data set id from a folder name: 'ACDC training/' -> 'ACDC-training'."""
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", Path(path).resolve().name).strip("-._+")[:100]
    return base or "dataset"


def check_size(size: int) -> int:
    """Slices must survive the UNet's four halvings."""
    if size < 16 or size % 16:
        raise UserError(f"--size {size}: use a multiple of 16, at least 16 (the UNet halves it four times)")
    return size


def import_dataset(
    lab: Lab,
    path: Path | str,
    *,
    fmt: str = "auto",
    name: str,
    size: int = 128,
    spacing: float | None = None,
    val_subjects: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    classes: list[str] | None = None,
    report: Reporter = silent,
) -> SliceSet:
    """Read `path`, slice, normalise, crop and split it, and store it as `datasets/<name>.h5`."""
    check_name(name)
    with lab.claim("datasets", name, new=True) as target:
        return _import(
            lab,
            target,
            path,
            fmt=fmt,
            name=name,
            size=size,
            spacing=spacing,
            val_subjects=val_subjects,
            val_fraction=val_fraction,
            seed=seed,
            classes=classes,
            report=report,
        )


def _import(
    lab: Lab,
    target: Path,
    path: Path | str,
    *,
    fmt: str,
    name: str,
    size: int,
    spacing: float | None,
    val_subjects: int | None,
    val_fraction: float | None,
    seed: int,
    classes: list[str] | None,
    report: Reporter,
) -> SliceSet:
    """The import itself, under the name's claim."""
    check_size(size)
    if spacing is not None and not 0.05 <= spacing <= 50.0:
        raise UserError(f"--spacing {spacing}: expected an in-plane pixel size in mm (0.05 to 50)")
    started = time.monotonic()
    source = read_source(Path(path), fmt, classes)
    class_map = map_classes(source.declared)
    if source.info.get("note"):
        report(Message(str(source.info["note"])))
    report(Started(what=f"import {name}", total=len(source.volumes), unit="volumes", info={"format": source.format}))

    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    subject_idx: list[np.ndarray] = []
    volume_idx: list[np.ndarray] = []
    subjects = source.subjects
    index_of = {s: i for i, s in enumerate(subjects)}
    spacings: list[tuple[float, float]] = []
    seen = np.zeros(len(class_map.classes), dtype=bool)
    per_subject: Counter[str] = Counter()
    volume_info: list[dict[str, Any]] = []
    labelled = True
    for v, ref in enumerate(source.volumes):
        vol = load_volume(ref, class_map)
        label = vol.label
        if label is None:  # prediction only: no voxel counts anywhere (IGNORE)
            labelled = False
            label = np.full(vol.image.shape, IGNORE, dtype=np.uint8)
        else:
            seen[np.unique(label)] = True
        img, lbl, row_col, where = place_volume(
            vol.image,
            label,
            (vol.spacing[0], vol.spacing[1]),
            size=size,
            target_spacing=spacing,
            label_fill=0 if vol.label is not None else IGNORE,
        )
        volume_info.append(_provenance(ref, vol, where, img.shape[0]))
        images.append(img)
        labels.append(lbl)
        subject_idx.append(np.full(img.shape[0], index_of[ref.subject], dtype=np.int32))
        volume_idx.append(np.full(img.shape[0], v, dtype=np.int32))
        spacings.append(row_col)
        per_subject[ref.subject] += img.shape[0]
        last_of_subject = v + 1 == len(source.volumes) or source.volumes[v + 1].subject != ref.subject
        text = f"{ref.subject}: {per_subject[ref.subject]} slices" if last_of_subject else ref.subject
        report(Progress(done=v + 1, total=len(source.volumes), text=text))

    present = list(class_map.present)
    if source.present_from_labels:
        present = [bool(s) or i == 0 for i, s in enumerate(seen)]
    split = split_subjects(subjects, val_subjects=val_subjects, val_fraction=val_fraction, seed=seed)
    sp = np.asarray(spacings, dtype=np.float64)
    stored_spacing = (float(np.median(sp[:, 0])), float(np.median(sp[:, 1])))
    slices = SliceSet(
        name=name,
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        subject=np.concatenate(subject_idx),
        subjects=subjects,
        split=split,
        classes=list(class_map.classes),
        present=present,
        spacing=stored_spacing,
        volume=np.concatenate(volume_idx),
        volumes=[ref.volume for ref in source.volumes],
    )
    source_info: dict[str, Any] = {
        "format": source.format,
        "path": str(Path(path).resolve()),
        "declared_labels": {str(k): v for k, v in sorted(source.declared.items())},
        "options": {
            "size": size,
            "spacing": spacing,
            "val_subjects": val_subjects,
            "val_fraction": val_fraction,
            "seed": seed,
        },
        "spacing_range": [[float(sp[:, i].min()), float(sp[:, i].max())] for i in range(2)],
        **{k: v for k, v in source.info.items() if k != "patients"},
        "labelled": labelled,
    }
    if spacing is None and np.ptp(sp, axis=0).max() > 0.05 * sp.max():
        report(
            Message(f"pixel sizes vary from {sp.min():.2f} to {sp.max():.2f} mm; --spacing MM resamples them to one")
        )
    write_slices(
        target,
        slices,
        source=source_info,
        provenance={"data": source_info["path"], "seed": seed},
        volume_info=volume_info,
    )
    report(Finished(what=f"import {name}", result=name, seconds=time.monotonic() - started))
    return slices


def _provenance(ref: VolumeRef, vol: Volume, where: Placement, slices: int) -> dict[str, Any]:
    """What `show DATASET` prints per volume: the files read, their geometry, and the placement
    (resampling and crop/pad box) that leads from the source voxels to the stored slices."""
    import nibabel as nib

    return {
        "volume": ref.volume,
        "subject": ref.subject,
        "phase": vol.info.get("phase", ref.phase),
        "files": list(vol.files),
        "spacing": [float(s) for s in vol.spacing],
        "orientation": "".join(nib.aff2axcodes(vol.affine)),
        "affine": [[float(x) for x in row] for row in vol.affine],
        "slices": int(slices),
        "placement": where.to_json(),
        **{k: v for k, v in vol.info.items() if k != "phase"},
    }
