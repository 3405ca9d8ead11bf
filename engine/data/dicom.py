"""DICOM images read with pydicom: headers, pixel values, and slices stacked into volumes.

A short-axis cine comes as one file per slice and time point. Slices of one phase are ordered
along the slice normal (ImageOrientationPatient x ImagePositionPatient; SliceLocation, then
InstanceNumber where the geometry is missing) and a phase is a slice's rank in time (TriggerTime,
then InstanceNumber), so the volumes do not depend on how files happen to be named. Volumes come
out as the NIfTI readers give them: (x = column, y = row, slice), with an affine from the DICOM
patient coordinates (LPS) turned into nibabel's RAS.

Every failure names the file: not DICOM, no pixel data, a compressed transfer syntax with no
decoder installed, images of different sizes in one series.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.store.errors import UserError

POSITION_DECIMALS = 2  # slices closer than 0.01 mm along the normal share a position


@dataclass
class DicomImage:
    """The header fields of one DICOM image file that decide where its pixels go."""

    path: Path
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) in mm
    orientation: np.ndarray | None  # (6,) ImageOrientationPatient: row direction, column direction
    position: np.ndarray | None  # (3,) ImagePositionPatient of the first pixel's centre, mm (LPS)
    slice_location: float | None
    trigger_time: float | None
    instance: int
    thickness: float | None
    series: str  # SeriesInstanceUID ('' when missing)
    patient: str  # PatientID ('' when missing)
    modality: str = ""  # MR, CT, SEG ...

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        return np.cross(self.orientation[:3], self.orientation[3:])

    @property
    def exact_location(self) -> float:
        """Where the slice lies along the stack (mm): projection on the normal, else SliceLocation."""
        normal = self.normal
        if normal is not None and self.position is not None:
            return float(np.dot(normal, self.position))
        if self.slice_location is not None:
            return self.slice_location
        return float(self.instance)

    @property
    def location(self) -> float:
        """`exact_location` rounded, so that images of one position group together."""
        return round(self.exact_location, POSITION_DECIMALS)


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (n,) and np.isfinite(out).all() else None


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def read_header(path: Path) -> DicomImage:
    """The geometry and timing fields of one file, without its pixels."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path}: not a readable DICOM file ({str(exc).splitlines()[0] if str(exc) else exc})") from exc
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not rows or not columns:
        raise UserError(f"{path}: DICOM without an image (no Rows/Columns; a report or a structure set?)")
    spacing = _floats(ds.get("PixelSpacing"), 2)
    instance = ds.get("InstanceNumber")
    return DicomImage(
        path=path,
        rows=int(rows),
        columns=int(columns),
        pixel_spacing=(float(spacing[0]), float(spacing[1]))
        if spacing is not None and (spacing > 0).all()
        else (1.0, 1.0),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        slice_location=_float(ds.get("SliceLocation")),
        trigger_time=_float(ds.get("TriggerTime")),
        instance=int(instance) if instance not in (None, "") else 0,
        thickness=_float(ds.get("SpacingBetweenSlices")) or _float(ds.get("SliceThickness")),
        series=str(ds.get("SeriesInstanceUID", "")),
        patient=str(ds.get("PatientID", "")),
        modality=str(ds.get("Modality", "")),
    )


def read_pixels(path: Path) -> np.ndarray:
    """The image (rows, columns) as float32 with RescaleSlope and RescaleIntercept applied."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise UserError(f"{path}: not a readable DICOM file ({exc})") from exc
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UserError(f"{path}: DICOM without pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = np.asarray(ds.pixel_array, dtype=np.float32)
    except Exception as exc:  # a missing decoder plugin, truncated or malformed pixel data
        if syntax is not None and syntax.is_compressed:
            raise UserError(
                f"{path}: compressed transfer syntax {syntax.name} ({syntax}) cannot be decoded here "
                "(install a pydicom pixel-data plugin such as pylibjpeg, or decompress with gdcmconv --raw)"
            ) from exc
        raise UserError(f"{path}: cannot read its pixel data ({str(exc).splitlines()[0]})") from exc
    if pixels.ndim != 2:
        raise UserError(f"{path}: pixel data of shape {pixels.shape}; expected one grey-level 2D image")
    slope = _float(ds.get("RescaleSlope"))
    intercept = _float(ds.get("RescaleIntercept"))
    if slope is not None and slope != 1.0:
        pixels = pixels * np.float32(slope)
    if intercept:
        pixels = pixels + np.float32(intercept)
    return pixels


def phases(images: list[DicomImage]) -> dict[int, list[DicomImage]]:
    """Images grouped by cardiac phase: an image's rank in time among the images at its position."""
    by_location: dict[float, list[DicomImage]] = defaultdict(list)
    for image in images:
        by_location[image.location].append(image)
    out: dict[int, list[DicomImage]] = defaultdict(list)
    for group in by_location.values():
        group.sort(key=lambda d: (d.trigger_time if d.trigger_time is not None else 0.0, d.instance, d.path.name))
        for rank, image in enumerate(group):
            out[rank].append(image)
    return dict(sorted(out.items()))


def check_same_size(images: list[DicomImage], what: str) -> None:
    """One matrix size per volume: a mixed series cannot be stacked."""
    first = images[0]
    for image in images[1:]:
        if (image.rows, image.columns) != (first.rows, first.columns):
            raise UserError(
                f"{image.path}: {image.rows}x{image.columns} image in {what} of "
                f"{first.rows}x{first.columns} images (as {first.path.name})"
            )


def stack_geometry(images: list[DicomImage]) -> tuple[list[DicomImage], tuple[float, float, float], np.ndarray]:
    """The slices in stack order, the voxel size (x, y, z) in mm and the voxel -> RAS affine."""
    ordered = sorted(images, key=lambda d: (d.location, d.instance))
    first = ordered[0]
    row_mm, col_mm = first.pixel_spacing
    locations = np.asarray([d.exact_location for d in ordered])
    steps = np.diff(locations)
    z_mm = float(np.median(steps)) if steps.size and np.median(steps) > 0 else (first.thickness or 1.0)
    affine = np.eye(4)
    if first.orientation is not None and first.position is not None:
        row_dir, col_dir = first.orientation[:3], first.orientation[3:]
        normal = np.cross(row_dir, col_dir)
        # x (column index) steps along the row direction by the column spacing, y along the column direction
        affine[:3, 0] = row_dir * col_mm
        affine[:3, 1] = col_dir * row_mm
        affine[:3, 2] = normal * z_mm
        affine[:3, 3] = first.position
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # DICOM LPS -> NIfTI RAS
    else:
        affine[:3, :3] = np.diag([col_mm, row_mm, z_mm])
    return ordered, (float(col_mm), float(row_mm), float(z_mm)), affine


def stack_pixels(ordered: list[DicomImage]) -> np.ndarray:
    """The pixels of stacked slices as one float32 volume (x, y, slice)."""
    volume = np.empty((ordered[0].columns, ordered[0].rows, len(ordered)), dtype=np.float32)
    for k, image in enumerate(ordered):
        pixels = read_pixels(image.path)
        if pixels.shape != (image.rows, image.columns):
            raise UserError(
                f"{image.path}: pixel data of shape {pixels.shape} where the header says {image.rows}x{image.columns}"
            )
        volume[:, :, k] = pixels.T
    return volume


def dicom_files(folder: Path) -> list[Path]:
    """Files under `folder` that look like DICOM: *.dcm, *.ima, or no suffix with the DICM preamble."""
    out = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in (".dcm", ".ima", ".dicom"):
            out.append(path)
        elif suffix == "":
            try:
                with path.open("rb") as fh:
                    head = fh.read(132)
            except OSError:
                continue
            if head[128:132] == b"DICM":
                out.append(path)
    return out
