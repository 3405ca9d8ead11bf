"""Phantom presets: the acquisition and contrast of each data set the paper uses.

Each preset mimics one real data set closely enough that models trained on them differ the way
the paper's models do: ACDC (bright-blood cine, RV/MYO/LV labelled), T1 mapping (a quantitative
map in milliseconds with the fat dark and blood brightest, myocardium labelled only) and RVSC
(cine from another scanner and scale, right ventricle labelled only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reuse_console.store.errors import UserError

# Tissues the phantom draws, in painting order (later ones cover earlier ones).
TISSUES = ("air", "body", "fat", "muscle", "lung", "liver", "spine", "vessel", "myo", "blood")


@dataclass(frozen=True)
class Preset:
    """Everything that differs between the simulated data sets."""

    name: str
    description: str
    labels: tuple[int, ...]  # canonical label values kept (others are written as background)
    frames: int  # volumes per subject: 2 (ED and ES) for cine, 1 for a map
    channel: str  # nnU-Net channel name
    fov_mm: tuple[float, float]  # field of view along x, sampled per subject
    matrix: tuple[int, int]  # in-plane matrix along x, sampled per subject (y follows the FOV aspect)
    aspect: tuple[float, float]  # y/x matrix ratio
    slices: tuple[int, int]  # slices per volume, inclusive
    intensity: dict[str, float] = field(default_factory=dict)  # tissue -> relative signal
    jitter: float = 0.15  # per-subject relative variation of each tissue's signal
    noise: tuple[float, float] = (0.03, 0.10)  # Rician sigma relative to blood signal
    bias: float = 0.3  # amplitude of the smooth multiplicative bias field
    scale: tuple[float, float] = (150.0, 700.0)  # stored value of signal 1.0, per subject
    blur: tuple[float, float] = (0.5, 0.9)  # partial-volume blur sigma in pixels
    ghost: tuple[float, float] = (0.0, 0.0)  # amplitude of motion ghosts along the phase-encoding axis


PRESETS: dict[str, Preset] = {
    "acdc": Preset(
        name="acdc",
        description="bright-blood cine (bSSFP) like ACDC: ED and ES frames, labels RV, MYO, LV",
        labels=(1, 2, 3),
        frames=2,
        channel="cineMRI",
        fov_mm=(300.0, 390.0),
        matrix=(176, 240),
        aspect=(0.8, 1.0),
        slices=(6, 12),
        intensity={
            "air": 0.0,
            "body": 0.30,
            "fat": 0.85,
            "muscle": 0.26,
            "lung": 0.05,
            "liver": 0.42,
            "spine": 0.36,
            "vessel": 0.95,
            "myo": 0.27,
            "blood": 1.0,
        },
        jitter=0.2,
        noise=(0.03, 0.14),
        ghost=(0.0, 0.12),
    ),
    "t1": Preset(
        name="t1",
        description="native T1 map (ms) like the T1 mapping set: one frame, myocardium label only",
        labels=(2,),
        frames=1,
        channel="T1map",
        fov_mm=(260.0, 330.0),
        matrix=(144, 192),
        aspect=(0.75, 0.95),
        slices=(6, 12),
        intensity={
            "air": 0.0,
            "body": 0.55,
            "fat": 0.18,
            "muscle": 0.55,
            "lung": 0.45,
            "liver": 0.42,
            "spine": 0.40,
            "vessel": 1.0,
            "myo": 0.60,
            "blood": 1.0,
        },
        jitter=0.08,
        noise=(0.04, 0.09),
        bias=0.08,
        scale=(1550.0, 1800.0),
        blur=(0.7, 1.1),
    ),
    "rvsc": Preset(
        name="rvsc",
        description="cine from another scanner like RVSC: ED and ES frames, right ventricle label only",
        labels=(1,),
        frames=2,
        channel="cineMRI",
        fov_mm=(320.0, 380.0),
        matrix=(208, 256),
        aspect=(0.8, 0.9),
        slices=(6, 12),
        intensity={
            "air": 0.0,
            "body": 0.35,
            "fat": 0.70,
            "muscle": 0.33,
            "lung": 0.08,
            "liver": 0.50,
            "spine": 0.40,
            "vessel": 0.90,
            "myo": 0.34,
            "blood": 1.0,
        },
        noise=(0.04, 0.14),
        bias=0.4,
        ghost=(0.0, 0.12),
        scale=(800.0, 2500.0),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called `name`, or a UserError listing the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown phantom preset {name!r}: choose one of {', '.join(PRESETS)}") from None
