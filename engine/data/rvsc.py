"""The RV Segmentation Challenge (RVSC, MICCAI 2012) layout: DICOM images and contour text files.

    TrainingSet/patientNN/PNNdicom/PNN-NNNN.dcm                       one image per slice and time point
    TrainingSet/patientNN/PNNcontours-manual/PNN-NNNN-icontour-manual.txt   endocardium (RV cavity)
    TrainingSet/patientNN/PNNcontours-manual/PNN-NNNN-ocontour-manual.txt   epicardium

Contours exist for the ED and ES images only. An image with an i-contour becomes a labelled slice
(inside = RV, label 1; see engine/data/contours.py for the pixel convention). The o-contour (RV
wall) is not a class here: its count is kept in the import's provenance (`epicardium`), so a future
RV-wall class knows which slices have it. A patient's labelled images form two volumes, ED and ES:
the earlier and the later of the (at most two) time ranks that carry contours, a rank counted per
slice position from the DICOM timing (engine/data/dicom.py). Patients with no contour folder
(Test1Set, Test2Set) import without labels, every time point a volume, for prediction only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.data.classes import ClassMap
from reuse_console.engine.data.contours import fill_contour, read_contour
from reuse_console.engine.data.dicom import (
    DicomImage,
    check_same_size,
    phases,
    read_header,
    stack_geometry,
    stack_pixels,
)
from reuse_console.engine.data.formats import Source, Volume, VolumeRef
from reuse_console.store.errors import UserError

SETS = ("TrainingSet", "Test1Set", "Test2Set")
PATIENT_DIR = re.compile(r"^patient\d+$", re.IGNORECASE)
_CONTOUR = re.compile(r"^(?P<image>.+)-(?P<kind>[io])contour-manual\.txt$", re.IGNORECASE)
DECLARED = {0: "background", 1: "RV"}


def _patients(root: Path) -> tuple[Path, list[Path]]:
    """The set folder to read and its patient folders (root may be the set or the folder above)."""
    if not any(PATIENT_DIR.match(p.name) for p in root.iterdir() if p.is_dir()):
        for name in SETS:
            if (root / name).is_dir():
                root = root / name
                break
    patients = sorted((p for p in root.iterdir() if p.is_dir() and PATIENT_DIR.match(p.name)), key=lambda p: p.name)
    if not patients:
        raise UserError(f"{root}: no RVSC patient folders (patientNN/ with PNNdicom/) found; is --format right?")
    return root, patients


def _one_folder(patient: Path, suffix: str, required: bool) -> Path | None:
    found = sorted(p for p in patient.iterdir() if p.is_dir() and p.name.lower().endswith(suffix))
    if not found:
        if required:
            raise UserError(f"{patient}: no *{suffix}/ folder (RVSC keeps a patient's images in PNN{suffix}/)")
        return None
    if len(found) > 1:
        raise UserError(f"{patient}: {len(found)} *{suffix}/ folders ({found[0].name}, {found[1].name}); expected one")
    return found[0]


def _contours(folder: Path, images: dict[str, DicomImage]) -> dict[str, dict[str, Path]]:
    """Image stem -> {"i": path, "o": path}; a contour naming a missing image is refused."""
    out: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in sorted(folder.iterdir()):
        m = _CONTOUR.match(path.name)
        if not path.is_file() or m is None:
            continue
        stem = m.group("image")
        if stem not in images:
            raise UserError(f"{path}: contour for image {stem}, which is not in the patient's dicom folder")
        out[stem][m.group("kind").lower()] = path
    return dict(out)


def _labelled_loader(patient: str, ordered: list[DicomImage], contours: dict[str, dict[str, Path]], phase: str) -> Any:
    def load(class_map: ClassMap) -> Volume:
        _, spacing, affine = stack_geometry(ordered)
        image = stack_pixels(ordered)
        raw = np.zeros(image.shape, dtype=np.uint8)
        files = [str(d.path) for d in ordered]
        for k, d in enumerate(ordered):
            inner = contours[d.path.stem]["i"]
            raw[:, :, k] = fill_contour(read_contour(inner), (d.rows, d.columns)).T
            files.append(str(inner))
        label = class_map.lut[raw]
        epicardium = sum(1 for d in ordered if "o" in contours[d.path.stem])
        info: dict[str, Any] = {"phase": phase, "epicardium": epicardium}
        return Volume(image, label, spacing, affine, files, info)

    return load


def _unlabelled_loader(ordered: list[DicomImage], phase: str | None) -> Any:
    def load(class_map: ClassMap) -> Volume:
        _, spacing, affine = stack_geometry(ordered)
        return Volume(stack_pixels(ordered), None, spacing, affine, [str(d.path) for d in ordered], {"phase": phase})

    return load


def _patient_volumes(patient: Path) -> tuple[list[VolumeRef], dict[str, Any]]:
    dicom_dir = _one_folder(patient, "dicom", required=True)
    assert dicom_dir is not None
    files = sorted(p for p in dicom_dir.iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
    if not files:
        raise UserError(f"{dicom_dir}: no .dcm files")
    images = {p.stem: read_header(p) for p in files}
    contour_dir = _one_folder(patient, "contours-manual", required=False)
    contours = _contours(contour_dir, images) if contour_dir is not None else {}
    rank_of = {d.path.stem: rank for rank, group in phases(list(images.values())).items() for d in group}
    name = patient.name
    refs: list[VolumeRef] = []
    if contour_dir is None:
        for rank, group in phases(list(images.values())).items():
            check_same_size(group, f"{name} time point {rank}")
            ordered, _, _ = stack_geometry(group)
            phase = "ED" if rank == 0 else None
            refs.append(
                VolumeRef(name, f"{name}_t{rank:02d}", dicom_dir, None, phase, _unlabelled_loader(ordered, phase))
            )
        return refs, {"labelled": False, "images": len(images)}
    inner = {stem for stem, kinds in contours.items() if "i" in kinds}
    if not inner:
        raise UserError(f"{contour_dir}: no i-contour files (PNN-NNNN-icontour-manual.txt)")
    ranks = sorted({rank_of[stem] for stem in inner})
    if len(ranks) > 2:
        raise UserError(f"{contour_dir}: i-contours at {len(ranks)} time points {ranks}; RVSC has ED and ES only")
    for phase, rank in zip(("ED", "ES"), ranks):
        group = [images[stem] for stem in sorted(inner) if rank_of[stem] == rank]
        check_same_size(group, f"{name} {phase}")
        ordered, _, _ = stack_geometry(group)
        positions = [d.location for d in ordered]
        if len(set(positions)) != len(positions):
            raise UserError(f"{ordered[0].path}: two {phase} images at one slice position; check the DICOM geometry")
        loader = _labelled_loader(name, ordered, contours, phase)
        refs.append(VolumeRef(name, f"{name}_{phase}", dicom_dir, contour_dir, phase, loader))
    return refs, {"labelled": True, "images": len(images), "contoured": len(inner), "ranks": ranks}


def read_rvsc(root: Path) -> Source:
    """Every patient of an RVSC set (TrainingSet, Test1Set or Test2Set, or the folder above them)."""
    folder, patients = _patients(root)
    volumes: list[VolumeRef] = []
    per_patient: dict[str, Any] = {}
    for patient in patients:
        refs, info = _patient_volumes(patient)
        volumes.extend(refs)
        per_patient[patient.name] = info
    labelled = {p: i["labelled"] for p, i in per_patient.items()}
    if len(set(labelled.values())) > 1:
        some = sorted(p for p, lab in labelled.items() if not lab)[:3]
        raise UserError(f"{folder}: some patients have contours and some ({', '.join(some)}) do not; import them apart")
    found: dict[str, Any] = {"set": folder.name, "patients": per_patient, "labelled": all(labelled.values())}
    if not found["labelled"]:
        found["note"] = (
            f"{folder.name}: no contours, imported without labels (every time point a volume; prediction only)"
        )
    return Source("rvsc", folder, volumes, dict(DECLARED), info=found)
