"""Volumes -> normalised 2D slices, subject-level splits, and the data set file in the lab.

A data set is one HDF5 file `datasets/<name>.h5` holding every slice of every subject, already
normalised per volume and cropped to one size, so training and scans read it with no more work.
Subjects stay whole: the split is stored per subject, never per slice, because the paper's
"10 and 50 training subjects" are subject counts and slices of one heart are not independent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from h5py import string_dtype

from reuse_console.engine.data.source_grid import Placement, placement
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

CARDIAC_CLASSES = ["background", "RV", "MYO", "LV"]
KIND = "dataset"
SPLITS = ("train", "val")


@dataclass
class SliceSet:
    """Every slice of a data set in memory, with its subject index and the subject split."""

    name: str
    images: np.ndarray  # float32 (N, H, W), per-volume normalised
    labels: np.ndarray  # uint8 (N, H, W), values index into `classes`
    subject: np.ndarray  # int32 (N,), index into `subjects`
    subjects: list[str]
    split: list[str]  # per subject: "train" or "val"
    classes: list[str]
    present: list[bool]
    spacing: tuple[float, float]
    volume: np.ndarray | None = None  # int32 (N,), index into `volumes` (e.g. patient001_ED)
    volumes: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)  # source provenance and import options

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def subjects_in(self, split: str) -> list[int]:
        """Indices of the subjects in `split` ("train", "val", or "all"), in stored order."""
        if split == "all":
            return list(range(len(self.subjects)))
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: use train, val or all")
        return [i for i, s in enumerate(self.split) if s == split]

    def slice_indices(self, split: str, subjects: Sequence[int] | None = None) -> np.ndarray:
        """Indices of the slices of `subjects` (default: every subject of `split`), ascending.

        `subjects` are subject indices and must belong to `split`, so a subset of the training
        subjects can never leak validation slices.
        """
        allowed = self.subjects_in(split)
        if subjects is None:
            chosen = allowed
        else:
            chosen = [int(s) for s in subjects]
            outside = sorted(set(chosen) - set(allowed))
            if outside:
                names = ", ".join(self.subjects[i] if 0 <= i < len(self.subjects) else str(i) for i in outside[:5])
                raise UserError(f"data set {self.name!r}: subjects not in split {split!r}: {names}")
        mask = np.isin(self.subject, np.asarray(chosen, dtype=np.int64))
        return np.flatnonzero(mask)


def split_subjects(
    subjects: Sequence[str], *, val_subjects: int | None = None, val_fraction: float | None = None, seed: int = 0
) -> list[str]:
    """A per-subject "train"/"val" list: a seeded random choice of validation subjects.

    Default: 20% of subjects (at least one when there are two or more) go to validation.
    """
    n = len(subjects)
    if val_subjects is not None and val_fraction is not None:
        raise UserError("give either --val-subjects or --val-fraction, not both")
    if val_subjects is not None:
        if val_subjects < 0 or (val_subjects > 0 and val_subjects >= n):
            raise UserError(f"--val-subjects {val_subjects}: must be between 0 and {max(n - 1, 0)} ({n} subjects)")
        n_val = val_subjects
    else:
        frac = 0.2 if val_fraction is None else val_fraction
        if not 0.0 <= frac < 1.0:
            raise UserError(f"--val-fraction {frac}: must be at least 0 and below 1")
        n_val = int(round(frac * n))
        if n >= 2 and frac > 0:
            n_val = min(max(n_val, 1), n - 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    val = set(order[:n_val].tolist())
    return ["val" if i in val else "train" for i in range(n)]


def normalise_volume(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip to the volume's [low, high] percentiles, then z-score: scanners differ in scale."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [low, high])
    img = np.clip(img, lo, hi)
    std = float(img.std())
    return ((img - float(img.mean())) / (std if std > 1e-8 else 1.0)).astype(np.float32)


def resample_slices(stack: np.ndarray, factor: tuple[float, float], *, order: int) -> np.ndarray:
    """Resize (Z, H, W) in-plane by `factor` (new pixels per old pixel) around pixel centres.

    order 1: bilinear (images); order 0: nearest (labels, so no new label values appear).
    """
    z, h, w = stack.shape
    nh = max(1, int(round(h * factor[0])))
    nw = max(1, int(round(w * factor[1])))
    if (nh, nw) == (h, w):
        return stack
    ys = (np.arange(nh) + 0.5) * (h / nh) - 0.5
    xs = (np.arange(nw) + 0.5) * (w / nw) - 0.5
    if order == 0:
        yi = np.clip(np.floor(ys + 0.5).astype(np.int64), 0, h - 1)
        xi = np.clip(np.floor(xs + 0.5).astype(np.int64), 0, w - 1)
        return stack[:, yi][:, :, xi]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(np.float32)[None, :, None]
    wx = (xs - x0).astype(np.float32)[None, None, :]
    s = stack.astype(np.float32)
    top = s[:, y0][:, :, x0] * (1 - wx) + s[:, y0][:, :, x1] * wx
    bottom = s[:, y1][:, :, x0] * (1 - wx) + s[:, y1][:, :, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def crop_or_pad(stack: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Centre crop or pad (Z, H, W) to (Z, size, size); pad with `fill`."""
    z, h, w = stack.shape
    out = np.full((z, size, size), fill, dtype=stack.dtype)

    def span(n: int) -> tuple[slice, slice]:
        if n >= size:
            start = (n - size) // 2
            return slice(start, start + size), slice(0, size)
        start = (size - n) // 2
        return slice(0, n), slice(start, start + n)

    src_h, dst_h = span(h)
    src_w, dst_w = span(w)
    out[:, dst_h, dst_w] = stack[:, src_h, src_w]
    return out


def volume_to_slices(
    image: np.ndarray,
    label: np.ndarray,
    spacing: tuple[float, float],
    *,
    size: int,
    target_spacing: float | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """One volume, stored (X, Y, Z) as NIfTI has it, to normalised (Z, size, size) slices.

    Slices are returned with rows along Y and columns along X (the usual viewing order), so
    `spacing` (x, y) becomes (row, column) = (y, x).
    """
    img, lab, row_col, _ = place_volume(image, label, spacing, size=size, target_spacing=target_spacing)
    return img, lab, row_col


def place_volume(
    image: np.ndarray,
    label: np.ndarray,
    spacing: tuple[float, float],
    *,
    size: int,
    target_spacing: float | None = None,
    label_fill: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float], Placement]:
    """`volume_to_slices` with the `Placement` that undoes it (padding labelled `label_fill`)."""
    img = np.transpose(normalise_volume(image), (2, 1, 0))
    lab = np.transpose(label, (2, 1, 0))
    row_col = (float(spacing[1]), float(spacing[0]))
    if target_spacing is not None:
        factor = (row_col[0] / target_spacing, row_col[1] / target_spacing)
        img = resample_slices(img, factor, order=1)
        lab = resample_slices(lab, factor, order=0)
        row_col = (float(target_spacing), float(target_spacing))
    x, y, z = (int(n) for n in image.shape)
    where = placement((x, y, z), (int(img.shape[1]), int(img.shape[2])), size)
    fill = float(img.min()) if img.size else 0.0
    return crop_or_pad(img, size, fill), crop_or_pad(lab, size, label_fill).astype(np.uint8), row_col, where


def dataset_summary(slices: SliceSet, source_format: str) -> dict[str, Any]:
    """What `reuse-console ls` shows for a data set."""
    return {
        "subjects": len(slices.subjects),
        "train": slices.split.count("train"),
        "val": slices.split.count("val"),
        "slices": len(slices),
        "size": slices.size,
        "classes": [c for c, p in zip(slices.classes, slices.present) if p],
        "spacing": [round(s, 3) for s in slices.spacing],
        "format": source_format,
    }


def write_slices(
    path: Path,
    slices: SliceSet,
    *,
    source: dict[str, Any],
    provenance: dict[str, Any] | None = None,
    volume_info: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a data set file atomically (a killed import leaves no data set behind).

    `volume_info`, one JSON object per volume (source files, geometry, placement), goes to the
    dataset `/volume_info` as one JSON string: an attribute would hit HDF5's 64 KiB limit.
    """
    n, h, w = slices.images.shape
    with atomic_h5(path) as f:
        stamp(f, KIND, provenance)
        chunk = (1, h, w) if n else None
        f.create_dataset("images", data=slices.images.astype(np.float32), chunks=chunk)
        f.create_dataset(
            "labels", data=slices.labels.astype(np.uint8), chunks=chunk, compression="gzip", compression_opts=1
        )
        f.create_dataset("subject", data=slices.subject.astype(np.int32))
        write_strings(f, "subjects", list(slices.subjects))
        write_strings(f, "split", list(slices.split))
        if slices.volume is not None:
            f.create_dataset("volume", data=slices.volume.astype(np.int32))
            write_strings(f, "volumes", list(slices.volumes))
        if volume_info is not None:
            f.create_dataset("volume_info", data=json.dumps(volume_info, sort_keys=True), dtype=string_dtype("utf-8"))
        f.attrs["name"] = slices.name
        set_json(f, "classes", list(slices.classes))
        set_json(f, "present", [bool(p) for p in slices.present])
        set_json(f, "spacing", [float(s) for s in slices.spacing])
        f.attrs["size"] = int(w)
        set_json(f, "source", source)
        set_json(f, "summary", dataset_summary(slices, str(source.get("format", ""))))
    return path


def read_slices(path: Path, name: str | None = None) -> SliceSet:
    """Read a data set file written by `write_slices`."""
    try:
        with open_h5(path) as f:
            kind = attr_str(f, "kind")
            if kind != KIND:
                raise UserError(f"{path} is a {kind or 'unknown'} file, not a data set")
            volume = np.asarray(f["volume"][()], dtype=np.int32) if "volume" in f else None
            return SliceSet(
                name=name or attr_str(f, "name") or path.stem,
                images=np.asarray(f["images"][()], dtype=np.float32),
                labels=np.asarray(f["labels"][()], dtype=np.uint8),
                subject=np.asarray(f["subject"][()], dtype=np.int32),
                subjects=read_strings(f["subjects"]),
                split=read_strings(f["split"]),
                classes=list(get_json(f, "classes")),
                present=[bool(p) for p in get_json(f, "present")],
                spacing=tuple(float(s) for s in get_json(f, "spacing")),  # type: ignore[arg-type]
                volume=volume,
                volumes=read_strings(f["volumes"]) if "volumes" in f else [],
                attrs={
                    "source": get_json(f, "source", {}),
                    "provenance": get_json(f, "provenance", {}),
                    "volume_info": _volume_info(f),
                },
            )
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a readable data set ({exc})") from exc


def _volume_info(f: Any) -> list[dict[str, Any]]:
    """The per-volume provenance written by `data import` ([] for files without it)."""
    if "volume_info" not in f:
        return []
    raw = f["volume_info"][()]
    return list(json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)))


@dataclass
class DatasetInfo:
    """A data set file's description without its images: what `reuse-console show` prints."""

    name: str
    classes: list[str]
    present: list[bool]
    spacing: list[float]
    size: int
    source: dict[str, Any]
    subjects: list[str]
    split: list[str]  # per subject
    slices: list[int]  # per subject
    volumes: list[int]  # per subject (0 when the file has no volume index)
    volume_info: list[dict[str, Any]] = field(default_factory=list)  # per volume: source files, geometry

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": self.classes,
            "present": self.present,
            "spacing": self.spacing,
            "size": self.size,
            "source": self.source,
            "subjects": [
                {"subject": s, "split": sp, "slices": n, "volumes": v}
                for s, sp, n, v in zip(self.subjects, self.split, self.slices, self.volumes)
            ],
            "volumes": self.volume_info,
        }


def read_dataset_info(path: Path, name: str | None = None) -> DatasetInfo:
    """Read a data set's attributes and per-subject slice counts; the images stay on disk."""
    try:
        with open_h5(path) as f:
            kind = attr_str(f, "kind")
            if kind != KIND:
                raise UserError(f"{path} is a {kind or 'unknown'} file, not a data set")
            subjects = read_strings(f["subjects"])
            subject = np.asarray(f["subject"][()], dtype=np.int64)
            slices = np.bincount(subject, minlength=len(subjects)) if subject.size else np.zeros(len(subjects), int)
            volumes = [0] * len(subjects)
            if "volume" in f:
                pairs = set(zip(subject.tolist(), np.asarray(f["volume"][()]).tolist()))
                volumes = [sum(1 for s, _ in pairs if s == i) for i in range(len(subjects))]
            return DatasetInfo(
                name=name or attr_str(f, "name") or path.stem,
                classes=list(get_json(f, "classes", [])),
                present=[bool(p) for p in get_json(f, "present", [])],
                spacing=[float(s) for s in get_json(f, "spacing", [])],
                size=int(f.attrs.get("size", 0)),
                source=get_json(f, "source", {}) or {},
                subjects=subjects,
                split=read_strings(f["split"]),
                slices=[int(n) for n in slices[: len(subjects)]],
                volumes=volumes,
                volume_info=_volume_info(f),
            )
    except UserError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a readable data set ({exc})") from exc


def load_slices(lab: Lab, name: str) -> SliceSet:
    """The data set `name` of `lab`, all in memory; NotFound when there is none."""
    if name.startswith("datasets/"):
        name = name.split("/", 1)[1]
    path = lab.path("datasets", name)
    if not path.exists():
        raise NotFound(f"no data set {name!r} in lab {lab.root} (see `reuse-console ls datasets`)")
    return read_slices(path, name)
