"""Readers of labelled volume collections on disk: ACDC, nnU-Net v2 raw, image/label folders
(RVSC and DICOM series in rvsc.py and dicom_series.py, through the same `Source`).

A reader only finds files and their declared label names (`Source`); voxels are read later, one
volume at a time, by `load_pair`, which checks everything a bad file can get wrong and says
which file and what, in one line. Label names are mapped to the canonical cardiac classes by
alias, so an nnU-Net set labelled {"background": 0, "myocardium": 1} lands on MYO = 2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.data.classes import ALIASES as ALIASES
from reuse_console.engine.data.classes import ClassMap
from reuse_console.engine.data.classes import canonical_class as canonical_class
from reuse_console.engine.data.classes import map_classes as map_classes
from reuse_console.engine.data.slices import CARDIAC_CLASSES
from reuse_console.store.errors import UserError

FORMATS = ("acdc", "nnunet", "folders", "rvsc", "dicom")
NIFTI_ENDINGS = (".nii.gz", ".nii")
_FRAME = re.compile(r"^(?P<subject>.+?)_(?:frame\d+|ed|es)$", re.IGNORECASE)
PATIENT_DIR = re.compile(r"^patient\d+$")


@dataclass
class Volume:
    """One volume as read from disk, in the source's own voxel grid (x, y, slice)."""

    image: np.ndarray  # float32 (x, y, z)
    label: np.ndarray | None  # uint8 class indices (x, y, z); None: the source has no labels
    spacing: tuple[float, float, float]  # mm along x, y, z
    affine: np.ndarray  # float64 (4, 4): voxel index -> world mm (RAS, as nibabel has it)
    files: list[str]  # the source files read, for provenance
    info: dict[str, Any] = field(default_factory=dict)  # e.g. phase, orientation codes


@dataclass
class VolumeRef:
    """One 3D volume on disk: NIfTI image and label files, or a reader's own `loader` (DICOM)."""

    subject: str
    volume: str
    image: Path
    label: Path | None
    phase: str | None = None  # "ED", "ES" where the source says
    loader: Callable[[ClassMap], Volume] | None = field(default=None, repr=False, compare=False)


@dataclass
class Source:
    """What a reader found: the volumes in subject order, declared labels, and metadata."""

    format: str
    root: Path
    volumes: list[VolumeRef]
    declared: dict[int, str]
    present_from_labels: bool = False  # ACDC declares no per-set classes: look at the labels
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(v.subject for v in self.volumes))


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_ENDINGS))


def _stem(path: Path) -> str:
    for ending in NIFTI_ENDINGS:
        if path.name.endswith(ending):
            return path.name[: -len(ending)]
    return path.name


def subject_of(case: str) -> str:
    """Group frames of one heart: 'patient001_frame01' and 'patient001_ES' -> 'patient001'."""
    m = _FRAME.match(case)
    return m.group("subject") if m else case


def _with_ending(folder: Path, stem: str) -> Path | None:
    for ending in NIFTI_ENDINGS:
        p = folder / f"{stem}{ending}"
        if p.exists():
            return p
    return None


def parse_info_cfg(path: Path) -> dict[str, str]:
    """ACDC's Info.cfg: 'Key: value' lines."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from exc
    info: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    return info


def read_acdc(root: Path) -> Source:
    """ACDC training layout: patientNNN/ with Info.cfg, frameXX(+_gt) for ED and ES (4D ignored)."""
    candidates = [root] + [root / sub for sub in ("training", "testing")]
    patients = sorted(
        {p for c in candidates if c.is_dir() for p in c.iterdir() if p.is_dir() and PATIENT_DIR.match(p.name)},
        key=lambda p: (p.name, str(p)),
    )
    if not patients:
        raise UserError(f"{root}: no ACDC patient folders (patientNNN/ with Info.cfg) found; is --format right?")
    volumes: list[VolumeRef] = []
    infos: dict[str, dict[str, str]] = {}
    for folder in patients:
        cfg = folder / "Info.cfg"
        if not cfg.exists():
            raise UserError(f"{cfg}: missing (ACDC needs it for the ED and ES frame numbers)")
        info = parse_info_cfg(cfg)
        frames: dict[str, int] = {}
        for phase in ("ED", "ES"):
            try:
                frames[phase] = int(float(info[phase]))
            except (KeyError, ValueError):
                raise UserError(f"{cfg}: no valid '{phase}: <frame number>' line") from None
        infos[folder.name] = info
        for phase, number in frames.items():
            if phase == "ES" and number == frames["ED"]:
                continue  # a single-frame subject (a map, not a cine)
            stem = f"{folder.name}_frame{number:02d}"
            image = _with_ending(folder, stem)
            if image is None:
                raise UserError(
                    f"{folder / (stem + '.nii.gz')}: missing image for {phase} (frame {number} in Info.cfg)"
                )
            label = _with_ending(folder, f"{stem}_gt")
            if label is None:
                raise UserError(f"{folder / (stem + '_gt.nii.gz')}: missing label file for {phase}")
            volumes.append(VolumeRef(folder.name, f"{folder.name}_{phase}", image, label, phase=phase))
    declared = dict(enumerate(CARDIAC_CLASSES))
    return Source("acdc", root, volumes, declared, present_from_labels=True, info={"patients": infos})


def read_nnunet(root: Path) -> Source:
    """nnU-Net v2 raw: dataset.json, imagesTr/{case}_0000{ending}, labelsTr/{case}{ending}."""
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        raise UserError(f"{meta_path}: missing (nnU-Net v2 raw data needs dataset.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{meta_path}: not valid JSON ({exc})") from exc
    for key in ("channel_names", "labels", "file_ending"):
        if key not in meta:
            raise UserError(f"{meta_path}: no '{key}' entry")
    ending = str(meta["file_ending"])
    if ending not in NIFTI_ENDINGS:
        raise UserError(f"{meta_path}: file_ending {ending!r} is not NIfTI (.nii.gz or .nii)")
    declared: dict[int, str] = {}
    for label_name, value in dict(meta["labels"]).items():
        if isinstance(value, (list, tuple)):
            raise UserError(
                f"{meta_path}: region-based label {label_name!r} is not supported; use plain integer labels"
            )
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"{meta_path}: label {label_name!r} has value {value!r}, expected an integer")
        if value in declared:
            raise UserError(f"{meta_path}: labels {declared[value]!r} and {label_name!r} share value {value}")
        declared[value] = str(label_name)
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir():
        raise UserError(f"{images_dir}: missing folder")
    suffix = f"_0000{ending}"
    images = sorted(p for p in images_dir.iterdir() if p.name.endswith(suffix))
    if not images:
        raise UserError(f"{images_dir}: empty folder (no *{suffix} images)")
    volumes: list[VolumeRef] = []
    for image in images:
        case = image.name[: -len(suffix)]
        label = labels_dir / f"{case}{ending}"
        if not label.exists():
            raise UserError(f"{label}: missing label file for {image.name}")
        volumes.append(VolumeRef(subject_of(case), case, image, label))
    volumes.sort(key=lambda v: (v.subject, v.volume))
    channels = dict(meta["channel_names"])
    info: dict[str, Any] = {
        "dataset_json": {
            k: meta[k] for k in ("channel_names", "labels", "numTraining", "file_ending", "name") if k in meta
        }
    }
    if len(channels) > 1:
        info["note"] = f"{len(channels)} channels declared; only channel 0000 is imported"
    return Source("nnunet", root, volumes, declared, info=info)


def read_folders(root: Path, classes: list[str] | None = None) -> Source:
    """images/ and labels/ holding NIfTI files with matching names; classes by value order."""
    images_dir, labels_dir = root / "images", root / "labels"
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: missing folder (the folders format needs images/ and labels/)")
    images = _nifti_files(images_dir)
    if not images:
        raise UserError(f"{images_dir}: empty folder (no .nii.gz or .nii files)")
    label_names = {p.name for p in _nifti_files(labels_dir)}
    volumes: list[VolumeRef] = []
    for image in images:
        if image.name not in label_names:
            raise UserError(f"{labels_dir / image.name}: missing label file for {image}")
        stem = _stem(image)
        volumes.append(VolumeRef(subject_of(stem), stem, image, labels_dir / image.name))
    orphans = sorted(label_names - {p.name for p in images})
    if orphans:
        raise UserError(f"{labels_dir / orphans[0]}: label file with no image in {images_dir}")
    volumes.sort(key=lambda v: (v.subject, v.volume))
    names = list(classes) if classes else list(CARDIAC_CLASSES)
    return Source("folders", root, volumes, dict(enumerate(names)))


def load_nifti(path: Path, *, integer: bool = False) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3D volume (x, y, slice) and its voxel size in mm; 2D images become one slice."""
    data, spacing, _ = read_nifti(path, integer=integer)
    return data, spacing


def read_nifti(path: Path, *, integer: bool = False) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """A 3D volume (x, y, slice), its voxel size in mm and its affine; 2D images become one slice.

    Errors name the file: unreadable or truncated NIfTI, a 4D series, other dimensions.
    """
    import nibabel as nib
    from nibabel.spatialimages import SpatialImage

    try:
        img = nib.load(str(path))
        if not isinstance(img, SpatialImage):  # a NIfTI file always loads as one; others may not
            raise TypeError(f"a {type(img).__name__}, not an image with voxels")
        data = np.asanyarray(img.dataobj) if integer else img.get_fdata(dtype=np.float32)
        zooms = tuple(float(z) for z in img.header.get_zooms())
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel, gzip and zlib raise many types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: cannot read NIfTI ({reason})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
        zooms = zooms[:2] + (1.0,)
    if data.ndim == 4:
        raise UserError(f"{path}: 4D image of shape {data.shape} where a 3D volume is expected (give single frames)")
    if data.ndim != 3:
        raise UserError(f"{path}: {data.ndim}D data of shape {data.shape}; expected a 3D volume")
    spacing = tuple(z if z > 0 else 1.0 for z in (zooms + (1.0, 1.0, 1.0))[:3])
    return data, spacing, affine  # type: ignore[return-value]


def map_label(raw: np.ndarray, class_map: ClassMap, path: Path) -> np.ndarray:
    """Raw label values -> class indices (uint8), refusing non-integers and undeclared values."""
    if not np.issubdtype(raw.dtype, np.integer) and not np.issubdtype(raw.dtype, np.bool_):
        raw_f = np.asarray(raw, dtype=np.float64)
        off = ~np.isclose(raw_f, np.rint(raw_f), atol=1e-3)
        if off.any() or not np.isfinite(raw_f).all():
            example = raw_f[off | ~np.isfinite(raw_f)].flat[0]
            raise UserError(f"{path}: non-integer label values (e.g. {example:g}); labels must be whole numbers")
        raw = np.rint(raw_f).astype(np.int64)
    values = np.unique(raw)
    outside = [int(v) for v in values if int(v) not in class_map.declared]
    if outside:
        raise UserError(f"{path}: label values {outside[:8]} outside the declared classes ({class_map.describe()})")
    return np.asarray(class_map.lut[np.asarray(raw, dtype=np.int64)], dtype=np.uint8)


def load_volume(ref: VolumeRef, class_map: ClassMap) -> Volume:
    """Image (float32) and label (class indices) of one volume, both checked, with their geometry."""
    if ref.loader is not None:
        return ref.loader(class_map)
    image, spacing, affine = read_nifti(ref.image)
    label = None
    files = [str(ref.image)]
    if ref.label is not None:
        raw, _ = load_nifti(ref.label, integer=True)
        if raw.shape != image.shape:
            raise UserError(
                f"{ref.label}: label shape {raw.shape} does not match image shape {image.shape} of {ref.image.name}"
            )
        label = map_label(raw, class_map, ref.label)
        files.append(str(ref.label))
    if not np.isfinite(image).all():
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    info = {"phase": ref.phase} if ref.phase else {}
    return Volume(image, label, spacing, affine, files, info)


def load_pair(ref: VolumeRef, class_map: ClassMap) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image (float32) and label (uint8, mapped to class indices) of one labelled volume."""
    volume = load_volume(ref, class_map)
    if volume.label is None:
        raise UserError(f"{ref.image}: no label file for volume {ref.volume}")
    return volume.image, volume.label, volume.spacing
