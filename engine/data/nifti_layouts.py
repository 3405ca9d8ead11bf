"""Write phantom subjects in the folder layouts real data comes in: ACDC and nnU-Net v2 raw.

Writing the same layouts the readers in `formats.py` accept means the phantom exercises the
exact import path real data takes, and a user can hand phantom folders to other tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from reuse_console.engine.data.phantom_presets import get_preset
from reuse_console.engine.data.slices import CARDIAC_CLASSES

if TYPE_CHECKING:
    from reuse_console.engine.data.phantom import PhantomSubject
    from reuse_console.engine.data.phantom_presets import Preset

FRAME_SECONDS = 0.03  # time between cine frames written in pixdim[4]


def nifti_affine(spacing: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    """A voxel -> mm affine: axis-aligned with the voxel size, origin at the volume's centre."""
    sx, sy, sz = spacing[:3]
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-(shape[0] - 1) / 2 * sx, -(shape[1] - 1) / 2 * sy, -(shape[2] - 1) / 2 * sz]
    return affine


def save_nifti(path: Path, data: np.ndarray, spacing: tuple[float, ...], *, frame_s: float | None = None) -> Path:
    """Write `data` (3D or 4D) with matching affine, pixdim, units and q/s-form codes."""
    affine = nifti_affine(spacing, data.shape)
    img = nib.Nifti1Image(data, affine)
    hdr = img.header
    zooms = tuple(float(s) for s in spacing[:3]) + ((float(frame_s or FRAME_SECONDS),) if data.ndim == 4 else ())
    hdr.set_zooms(zooms)
    hdr.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def write_acdc_subject(out: Path, subject: PhantomSubject, *, cine: bool = True) -> Path:
    """`out/patientNNN/`: Info.cfg, frameXX (+ _gt) for ED and ES, and the 4D cine."""
    folder = out / subject.name
    folder.mkdir(parents=True, exist_ok=True)
    info = subject.info()
    (folder / "Info.cfg").write_text("".join(f"{k}: {v}\n" for k, v in info.items()))
    for frame in subject.frames:
        stem = f"{subject.name}_frame{frame.number:02d}"
        save_nifti(folder / f"{stem}.nii.gz", frame.image, subject.spacing)
        save_nifti(folder / f"{stem}_gt.nii.gz", frame.label, subject.spacing)
    if cine:
        save_nifti(folder / f"{subject.name}_4d.nii.gz", subject.cine(), subject.spacing)
    return folder


def nnunet_case(subject: PhantomSubject, number: int) -> str:
    """Case id of one frame, as nnU-Net's own ACDC conversion names them."""
    return f"{subject.name}_frame{number:02d}"


def nnunet_labels(preset: Preset) -> dict[str, int]:
    """Consecutive label values as nnU-Net requires: background 0, then the preset's classes."""
    labels = {"background": 0}
    for i, value in enumerate(sorted(preset.labels), start=1):
        labels[CARDIAC_CLASSES[value]] = i
    return labels


def write_nnunet_subject(out: Path, subject: PhantomSubject) -> None:
    """`imagesTr/{case}_0000.nii.gz` and `labelsTr/{case}.nii.gz` per frame, labels renumbered."""
    preset = get_preset(subject.preset)
    remap = np.zeros(256, dtype=np.uint8)
    for i, value in enumerate(sorted(preset.labels), start=1):
        remap[value] = i
    for frame in subject.frames:
        case = nnunet_case(subject, frame.number)
        save_nifti(out / "imagesTr" / f"{case}_0000.nii.gz", frame.image, subject.spacing)
        save_nifti(out / "labelsTr" / f"{case}.nii.gz", remap[frame.label], subject.spacing)


def write_nnunet_dataset_json(out: Path, preset: Preset, num_training: int) -> Path:
    """dataset.json of nnU-Net v2 raw data."""
    meta = {
        "channel_names": {"0": preset.channel},
        "labels": nnunet_labels(preset),
        "numTraining": int(num_training),
        "file_ending": ".nii.gz",
        "name": f"phantom-{preset.name}",
        "description": f"reuse-console synthetic phantom: {preset.description}",
    }
    path = out / "dataset.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path
