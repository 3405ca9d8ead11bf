"""Generic DICOM series (`--format dicom`): images in a folder tree, one series per subject.

Files are grouped by SeriesInstanceUID; a series is named by its folder relative to the root
(`case01`, `site-a-case02`). A series with several time points gives one volume per time point
(`case01_t00` ...). Labels are optional, as NIfTI beside the images: `label.nii.gz` (or `.nii`)
in the series folder for a one-volume series, `label_tNN.nii.gz` per time point otherwise; they
must cover the series' own voxel grid (any axis order or flip is undone through the affines,
anything else is refused). DICOM SEG objects are not read (converting them needs highdicom or
dcmqi); such a file is refused with the conversion to make. A series without labels imports
for prediction only.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.data.classes import ClassMap
from reuse_console.engine.data.dicom import (
    DicomImage,
    check_same_size,
    dicom_files,
    phases,
    read_header,
    stack_geometry,
    stack_pixels,
)
from reuse_console.engine.data.formats import NIFTI_ENDINGS, Source, Volume, VolumeRef, map_label, read_nifti
from reuse_console.engine.data.slices import CARDIAC_CLASSES
from reuse_console.store.errors import UserError

AFFINE_TOLERANCE_MM = 0.01


def _label_file(folder: Path, stem: str) -> Path | None:
    for ending in NIFTI_ENDINGS:
        if (folder / f"{stem}{ending}").exists():
            return folder / f"{stem}{ending}"
    return None


def label_in_grid(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """A NIfTI label brought onto a series' grid (x, y, slice) by axis order and flips alone."""
    import nibabel as nib
    from nibabel import orientations as ornt

    raw, _, label_affine = read_nifti(path, integer=True)
    transform = ornt.ornt_transform(ornt.io_orientation(label_affine), ornt.io_orientation(affine))
    moved = ornt.apply_orientation(raw, transform)
    moved_affine = label_affine @ ornt.inv_ornt_aff(transform, raw.shape)
    if moved.shape != tuple(shape) or not np.allclose(moved_affine, affine, atol=AFFINE_TOLERANCE_MM):
        raise UserError(
            f"{path}: label grid {raw.shape} does not cover the series' grid {tuple(shape)} "
            f"(orientation {''.join(nib.aff2axcodes(label_affine))} vs {''.join(nib.aff2axcodes(affine))}); "
            "resample it onto the DICOM series first"
        )
    return np.asarray(moved)


def _loader(ordered: list[DicomImage], label: Path | None, phase_rank: int | None) -> Any:
    def load(class_map: ClassMap) -> Volume:
        _, spacing, affine = stack_geometry(ordered)
        image = stack_pixels(ordered)
        files = [str(d.path) for d in ordered]
        mapped = None
        if label is not None:
            mapped = map_label(label_in_grid(label, image.shape, affine), class_map, label)
            files.append(str(label))
        info: dict[str, Any] = {} if phase_rank is None else {"time_point": phase_rank}
        return Volume(image, mapped, spacing, affine, files, info)

    return load


def _series_name(root: Path, folder: Path) -> str:
    rel = folder.relative_to(root).as_posix() if folder != root else root.name
    return rel.replace("/", "-") or "series"


def read_dicom(root: Path, classes: list[str] | None = None) -> Source:
    """Every DICOM series under `root`, one subject each, with NIfTI labels where present."""
    files = dicom_files(root)
    if not files:
        raise UserError(f"{root}: no DICOM files (*.dcm, *.ima, or files with the DICM preamble)")
    series: dict[tuple[str, Path], list[DicomImage]] = defaultdict(list)
    for path in files:
        header = read_header(path)
        if header.modality == "SEG":
            raise UserError(
                f"{path}: a DICOM SEG object; convert it to NIfTI beside the images as label.nii.gz "
                "(e.g. dcmqi's segimage2itkimage) to use it as labels"
            )
        series[(header.series or str(path.parent), path.parent)].append(header)
    volumes: list[VolumeRef] = []
    names: dict[str, int] = defaultdict(int)
    labelled: list[bool] = []
    for (_, folder), images in sorted(series.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        subject = _series_name(root, folder)
        names[subject] += 1
        if names[subject] > 1:
            subject = f"{subject}-s{names[subject]}"
        by_time = phases(images)
        for rank, group in by_time.items():
            check_same_size(group, f"series {subject}")
            ordered, _, _ = stack_geometry(group)
            one = len(by_time) == 1
            label = _label_file(folder, "label" if one else f"label_t{rank:02d}")
            labelled.append(label is not None)
            volume = subject if one else f"{subject}_t{rank:02d}"
            volumes.append(
                VolumeRef(subject, volume, folder, label, None, _loader(ordered, label, None if one else rank))
            )
    if any(labelled) and not all(labelled):
        missing = next(v for v, lab in zip(volumes, labelled) if not lab)
        raise UserError(f"{missing.image}: no label NIfTI for volume {missing.volume} while other series have one")
    names_by_value = list(classes) if classes else list(CARDIAC_CLASSES)
    info: dict[str, Any] = {"series": len(series), "labelled": all(labelled)}
    if not all(labelled):
        info["note"] = f"{root}: no label files, imported without labels (prediction only)"
    return Source("dicom", root, volumes, dict(enumerate(names_by_value)), info=info)
