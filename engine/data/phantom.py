"""Synthetic cardiac MRI phantom: short-axis stacks with labels, written as real NIfTI.

The real data sets (ACDC, T1 mapping, RVSC) cannot be downloaded here, so experiments run on
subjects drawn from `phantom_anatomy` and imaged with per-subject acquisition effects: a smooth
bias field, partial-volume blur, Rician noise and an arbitrary intensity scale. Subject i of a
seed is the same whatever the subject count (its generator is seeded by (seed, i)), so a
20-subject phantom is a superset of a 10-subject one; the preset's name is part of that seed,
so the acdc, t1 and rvsc cohorts of one seed are different people, as in the paper.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.events import Finished, Progress, Reporter, Started, silent
from reuse_console.engine.data.nifti_layouts import write_acdc_subject, write_nnunet_dataset_json, write_nnunet_subject
from reuse_console.engine.data.phantom_anatomy import Anatomy, render, sample_anatomy
from reuse_console.engine.data.phantom_presets import PRESETS, Preset, get_preset
from reuse_console.store.errors import UserError

LAYOUTS = ("acdc", "nnunet", "rvsc")


@dataclass
class PhantomFrame:
    """One 3D volume of a subject: image and labels stored (x, y, slice) as NIfTI has them."""

    number: int  # 1-based frame number in the cine (ACDC's frameXX)
    phase: str  # "ED" or "ES"
    image: np.ndarray  # int16
    label: np.ndarray  # uint8, only the preset's labels


@dataclass
class PhantomSubject:
    """One subject: its frames, geometry and the metadata ACDC keeps in Info.cfg."""

    name: str
    preset: str
    group: str
    spacing: tuple[float, float, float]
    frames: list[PhantomFrame]
    nb_frame: int
    height: float
    weight: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ed(self) -> int:
        return self.frames[0].number

    @property
    def es(self) -> int:
        return self.frames[-1].number

    def info(self) -> dict[str, Any]:
        """The Info.cfg fields."""
        return {
            "ED": self.ed,
            "ES": self.es,
            "Group": self.group,
            "Height": self.height,
            "NbFrame": self.nb_frame,
            "Weight": self.weight,
        }

    def cine(self) -> np.ndarray:
        """A short 4D cine (x, y, slice, frame): frames blended between ED and ES and back."""
        ed = self.frames[0].image.astype(np.float32)
        es = self.frames[-1].image.astype(np.float32)
        n, k_es = self.nb_frame, self.es
        out = np.empty(ed.shape + (n,), dtype=np.int16)
        for k in range(1, n + 1):
            if n == 1 or k_es == 1:
                a = 0.0
            elif k <= k_es:
                a = (k - 1) / (k_es - 1)
            else:
                a = 1.0 - 0.9 * (k - k_es) / max(n - k_es, 1)
            a = 0.5 - 0.5 * math.cos(math.pi * a)
            out[..., k - 1] = np.rint((1 - a) * ed + a * es).astype(np.int16)
        return out


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur in-plane (axes 0 and 1), edges repeated."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    for axis in (0, 1):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(img, pad, mode="edge")
        n = img.shape[axis]
        acc = np.zeros_like(img)
        for w, off in zip(kernel, offsets):
            acc += w * np.take(padded, np.arange(radius + off, radius + off + n), axis=axis)
        img = acc
    return img


def _bias_field(anat: Anatomy, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth multiplicative field (nx, ny, 1): coil sensitivity falling off across the chest."""
    nx, ny, _ = anat.shape
    x = np.linspace(-1, 1, nx, dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, ny, dtype=np.float32)[None, :]
    c = rng.normal(0.0, amplitude / 2, size=5)
    log_field = c[0] * x + c[1] * y + c[2] * x * y + c[3] * (x**2 - 0.33) + c[4] * (y**2 - 0.33)
    return np.exp(log_field)[:, :, None].astype(np.float32)


def _keep_labels(label: np.ndarray, keep: tuple[int, ...]) -> np.ndarray:
    """Zero the labels a preset's data set does not annotate (t1: MYO only, rvsc: RV only)."""
    return np.where(np.isin(label, keep), label, 0).astype(np.uint8)


def make_subject(preset: Preset | str, seed: int, index: int, *, scale: float = 1.0) -> PhantomSubject:
    """Subject `index` (0-based) of phantom `seed`, fully in memory."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    rng = np.random.default_rng([int(seed), int(index), zlib.crc32(preset.name.encode())])
    anat = sample_anatomy(rng, preset, scale=scale)
    bias = _bias_field(anat, rng, preset.bias)
    sigma_noise = rng.uniform(*preset.noise)
    sigma_blur = rng.uniform(*preset.blur)
    intensity = rng.uniform(*preset.scale)
    nb_frame = 1 if preset.frames == 1 else int(rng.integers(8, 13))
    es_number = 1 if preset.frames == 1 else int(round(nb_frame * rng.uniform(0.33, 0.45))) + 1
    ghost = rng.uniform(*preset.ghost) if rng.random() < 0.6 else 0.0
    ghost_shift = int(anat.shape[1] * rng.uniform(0.25, 0.45))
    phases = [("ED", 1, 0.0)] + ([("ES", es_number, 1.0)] if preset.frames > 1 else [])
    frames = []
    for phase, number, value in phases:
        signal, label = render(anat, value)
        if ghost > 0:  # breathing or arrhythmia ghosts: faint copies shifted along y
            signal = signal + ghost * (np.roll(signal, ghost_shift, axis=1) + np.roll(signal, -ghost_shift, axis=1))
        signal = _blur(signal * bias, sigma_blur)
        noise = sigma_noise * rng.standard_normal((2,) + signal.shape, dtype=np.float32)
        magnitude = np.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2)
        image = np.clip(np.rint(magnitude * intensity), 0, 32767).astype(np.int16)
        frames.append(PhantomFrame(number, phase, image, _keep_labels(label, preset.labels)))
    return PhantomSubject(
        name=f"patient{index + 1:03d}",
        preset=preset.name,
        group=anat.group,
        spacing=tuple(float(s) for s in anat.spacing),  # type: ignore[arg-type]
        frames=frames,
        nb_frame=nb_frame,
        height=float(round(rng.uniform(150.0, 195.0), 1)),
        weight=float(round(rng.uniform(50.0, 110.0), 1)),
        extra={
            "noise": float(sigma_noise),
            "blur": float(sigma_blur),
            "scale": float(intensity),
            "ghost": float(ghost),
        },
    )


def make_phantom(
    out: Path,
    *,
    preset: str = "acdc",
    subjects: int = 20,
    layout: str = "acdc",
    seed: int = 0,
    scale: float = 1.0,
    cine: bool = True,
    report: Reporter = silent,
) -> list[PhantomSubject]:
    """Generate `subjects` subjects and write them under `out` in the ACDC, nnU-Net v2 or RVSC layout.

    Returns the subjects' metadata (images dropped after writing, to keep memory flat).
    """
    the_preset = get_preset(preset)
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: choose acdc, nnunet or rvsc")
    if layout == "rvsc" and the_preset.labels != (1,):
        raise UserError(f"--layout rvsc writes RV contours only: use --preset rvsc (not {preset})")
    if subjects < 1:
        raise UserError(f"--subjects {subjects}: need at least one subject")
    if not 0.1 <= scale <= 2.0:
        raise UserError(f"scale {scale}: must be between 0.1 and 2")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report(Started(what=f"phantom {preset}", total=subjects, unit="subjects", info={"layout": layout, "seed": seed}))
    done: list[PhantomSubject] = []
    for i in range(subjects):
        subject = make_subject(the_preset, seed, i, scale=scale)
        if layout == "acdc":
            write_acdc_subject(out, subject, cine=cine)
        elif layout == "rvsc":
            from reuse_console.engine.data.dicom_layouts import write_rvsc_subject

            write_rvsc_subject(out, subject, i + 1)
        else:
            write_nnunet_subject(out, subject)
        nx, ny, nz = subject.frames[0].image.shape
        frames = len(subject.frames)
        text = f"{subject.name}: {subject.group}, {frames} frame(s) of {nx}x{ny}x{nz} at {subject.spacing[0]:.2f} mm"
        report(Progress(done=i + 1, total=subjects, text=text))
        for frame in subject.frames:
            frame.image = frame.image[:0]
            frame.label = frame.label[:0]
        done.append(subject)
    if layout == "nnunet":
        write_nnunet_dataset_json(out, the_preset, sum(len(s.frames) for s in done))
    seconds = time.monotonic() - started
    report(Finished(what=f"phantom {preset}", result=str(out), seconds=seconds))
    return done


__all__ = ["LAYOUTS", "PRESETS", "PhantomFrame", "PhantomSubject", "make_phantom", "make_subject"]
