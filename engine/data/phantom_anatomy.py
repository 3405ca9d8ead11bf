"""Phantom anatomy: sample one subject's heart and surroundings, and draw it at a cardiac phase.

Everything is in millimetres in a patient frame (x to the patient's left, y posterior), rotated
into the image by a per-subject angle. Shapes are drawn with soft edges (signed distance over
pixel size), so boundary pixels mix tissues as real partial-volume pixels do, while labels are
the same shapes thresholded at one half.

The heart: an elliptic LV whose cavity (label 3) and wall (label 2) taper from base to apex, a
crescent RV cavity (label 1) wrapped around the septum with a thin unlabelled free wall, and
papillary muscles inside the LV cavity (labelled cavity, as in ACDC). At end-systole the cavities
shrink and the wall thickens with its area kept. Around it, distractors a model must learn to
ignore: body outline, subcutaneous and pericardial fat, chest-wall muscle, lungs with vessels,
liver, spine, the descending aorta and, in basal slices, the great vessels and left atrium, all
of which are as bright as the blood pool in cine contrast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from reuse_console.engine.data.phantom_presets import Preset

GROUPS = ("NOR", "MINF", "DCM", "HCM", "RV")


@dataclass
class Anatomy:
    """One subject: geometry in mm, acquisition grid, and tissue signals."""

    group: str
    shape: tuple[int, int, int]  # (nx, ny, nz)
    spacing: tuple[float, float, float]  # mm (x, y, slice)
    rot: float
    t: np.ndarray  # (nz,) position of each slice from base (0) to apex (1)
    heart: np.ndarray  # (nz, 2) LV centre per slice in the patient frame
    lv: dict[str, float]
    lv_harm: np.ndarray  # (2, 3, 2): endo/epi, harmonic k=2..4, (amplitude, phase)
    rv: dict[str, float]
    rv_harm: np.ndarray  # (3, 2)
    body: dict[str, float]
    blobs: list[tuple[str, float, float, float, float, float]] = field(default_factory=list)
    # (tissue, x, y, radius, t_from, t_to): lungs' vessels, aorta, great vessels, atrium, spine
    liver: dict[str, float] = field(default_factory=dict)
    pericardial: dict[str, float] = field(default_factory=dict)
    tissue: dict[str, float] = field(default_factory=dict)


def sample_anatomy(rng: np.random.Generator, preset: Preset, *, scale: float = 1.0) -> Anatomy:
    """Draw one subject; `scale` shrinks the matrix (same field of view) for fast tests."""
    u = rng.uniform
    group = GROUPS[int(rng.integers(len(GROUPS)))]
    fov = u(*preset.fov_mm)
    nx = max(24, int(round(rng.integers(preset.matrix[0], preset.matrix[1] + 1) * scale)))
    ny = max(24, int(round(nx * u(*preset.aspect))))
    nz = int(rng.integers(preset.slices[0], preset.slices[1] + 1))
    pix = fov / nx
    thickness = float(np.clip(u(80.0, 100.0) / nz, 5.0, 10.0))

    t = np.linspace(u(0.0, 0.06), u(0.84, 0.95), nz)
    centre = np.array([u(8.0, 28.0), u(-30.0, -8.0)])  # heart sits left-anterior
    drift = rng.normal(0.0, 4.0, size=2) + np.array([5.0, 3.0])  # apex points left
    heart = centre[None, :] + t[:, None] * drift[None, :] + rng.normal(0.0, 1.2, size=(nz, 2))

    r_cav = {"NOR": (21, 26), "MINF": (25, 32), "DCM": (29, 36), "HCM": (17, 22), "RV": (20, 25)}[group]
    wall = {"NOR": (6.5, 9), "MINF": (5.5, 8.5), "DCM": (5, 7), "HCM": (11, 16), "RV": (6.5, 9)}[group]
    es = {"NOR": (0.58, 0.70), "MINF": (0.78, 0.9), "DCM": (0.85, 0.93), "HCM": (0.42, 0.58), "RV": (0.62, 0.75)}[group]
    lv = {
        "r_cav": u(*r_cav),
        "wall": u(*wall),
        "ecc": u(0.82, 1.0),
        "theta": u(0, math.pi),
        "es": u(*es),
        "papillary": u(2.5, 4.0),
        "pap_angle": u(-0.4, 0.4),
        "blood_apex": u(0.05, 0.25),
        "flow": u(0.0, 0.2),  # in-flow / slow-flow signal variation across the blood pool
        "flow_angle": u(0, 2 * math.pi),
        "flow_wave": u(25.0, 60.0),
        "flow_phase": u(0, 2 * math.pi),
    }
    lv_harm = np.stack([rng.normal(0.0, 0.035, size=(2, 3)), rng.uniform(0, 2 * math.pi, size=(2, 3))], axis=-1)
    if group == "MINF":  # a thinned infarct region
        lv_harm[1, 0, 0] = u(0.08, 0.14)
    rv_big = group == "RV"
    rv = {
        "a": u(8.0, 14.0) * (u(1.5, 1.9) if rv_big else 1.0),
        "b": u(33.0, 46.0) * (u(1.15, 1.35) if rv_big else 1.0),
        "psi": u(math.pi * 0.95, math.pi * 1.35),  # towards the patient's right-anterior
        "bend": u(0.0, 0.9),
        "end": u(0.6, 0.88),
        "es": u(0.5, 0.7) if not rv_big else u(0.8, 0.9),
        "wall": u(2.0, 3.5),
    }
    rv_harm = np.stack([rng.normal(0.0, 0.05, size=3), rng.uniform(0, 2 * math.pi, size=3)], axis=-1)
    body = {
        "cx": rng.normal(0.0, 6.0),
        "cy": u(5.0, 20.0),
        "ax": u(135.0, 175.0),
        "ay": u(95.0, 125.0),
        "fat": u(6.0, 22.0),
        "muscle": u(8.0, 16.0),
        "lung_ax": u(45.0, 60.0),
        "lung_ay": u(70.0, 90.0),
        "lung_x": u(75.0, 95.0),
    }
    by_back = body["cy"] + body["ay"]
    blobs: list[tuple[str, float, float, float, float, float]] = [
        ("spine", u(-5.0, 5.0), by_back - u(35.0, 45.0), u(14.0, 19.0), -1.0, 2.0),
        ("vessel", u(12.0, 28.0), by_back - u(62.0, 75.0), u(9.0, 13.0), -1.0, 2.0),  # descending aorta
    ]
    ring = lv["r_cav"] + lv["wall"]
    cx, cy = heart[0]
    for ang, rad in ((u(-2.3, -1.7), u(11.0, 15.0)), (u(-1.4, -0.6), u(10.0, 14.0))):  # aorta, pulmonary trunk
        dist = ring + rad + u(2.0, 10.0)
        blobs.append(("vessel", cx + dist * math.cos(ang), cy + dist * math.sin(ang), rad, -1.0, u(0.12, 0.3)))
    if rng.random() < 0.6:  # left atrium behind the base, as bright as the LV cavity
        ang, rad = u(1.2, 2.0), u(16.0, 24.0)
        dist = ring + rad * 0.6
        blobs.append(("vessel", cx + dist * math.cos(ang), cy + dist * math.sin(ang), rad, -1.0, t[0] + 1e-3))
    for _ in range(int(rng.integers(4, 11))):  # pulmonary vessels
        side = 1.0 if rng.random() < 0.5 else -1.0
        x = side * body["lung_x"] + rng.normal(0.0, body["lung_ax"] * 0.4)
        y = body["cy"] - 10.0 + rng.normal(0.0, body["lung_ay"] * 0.4)
        t0 = u(-0.2, 0.8)
        blobs.append(("vessel", x + body["cx"], y, u(2.0, 5.0), t0, t0 + u(0.15, 0.5)))
    liver = {"cx": u(-85.0, -50.0), "cy": u(15.0, 45.0), "ax": u(75.0, 100.0), "ay": u(60.0, 80.0), "t0": u(0.2, 0.6)}
    pericardial = {
        "width": u(1.5, 4.5) if rng.random() < 0.75 else 0.0,
        "angle": u(0, 2 * math.pi),
        "cover": u(-0.3, 0.5),
    }
    tissue = {k: v * (1.0 + rng.normal(0.0, preset.jitter)) for k, v in preset.intensity.items()}
    tissue["blood"] = preset.intensity["blood"]
    tissue["air"] = preset.intensity["air"]
    return Anatomy(
        group=group,
        shape=(nx, ny, nz),
        spacing=(pix, pix, thickness),
        rot=u(-0.6, 0.6),
        t=t,
        heart=heart,
        lv=lv,
        lv_harm=lv_harm,
        rv=rv,
        rv_harm=rv_harm,
        body=body,
        blobs=blobs,
        liver=liver,
        pericardial=pericardial,
        tissue=tissue,
    )


def _soft(distance: np.ndarray, pix: float) -> np.ndarray:
    """Fraction of a pixel inside a shape, from the signed distance (mm) of its centre."""
    return np.clip(0.5 - distance / pix, 0.0, 1.0).astype(np.float32)


def _angles(du: np.ndarray, dv: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cos k*phi, sin k*phi) for k = 1..4 of the direction (du, dv), without trigonometry."""
    r = np.sqrt(du**2 + dv**2)
    r = np.where(r > 1e-6, r, 1.0)
    c1, s1 = du / r, dv / r
    out = [(c1, s1)]
    for _ in range(3):
        ck, sk = out[-1]
        out.append((ck * c1 - sk * s1, sk * c1 + ck * s1))
    return out


def _harmonics(angles: list[tuple[np.ndarray, np.ndarray]], harm: np.ndarray) -> np.ndarray:
    """1 + sum_k a_k cos(k phi + p_k), k = 2, 3, 4: irregular, trabeculated boundaries."""
    out = np.ones_like(angles[0][0])
    for i, (amp, phase) in enumerate(harm):
        ck, sk = angles[i + 1]
        out += (amp * math.cos(phase)) * ck - (amp * math.sin(phase)) * sk
    return out


def lv_radii(anat: Anatomy, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Cavity and epicardial radius (mm) per slice at `phase` (0 = ED, 1 = ES).

    The wall's cross-section area is kept while the cavity shrinks, so it thickens at ES.
    """
    lv, t = anat.lv, anat.t
    taper = np.sqrt(np.clip(1.0 - (t * 0.97) ** 2, 0.0, 1.0))
    r_epi = (lv["r_cav"] + lv["wall"]) * (0.35 + 0.65 * taper)
    wall = lv["wall"] * (1.0 + 0.35 * t)
    r_cav = np.clip(r_epi - wall, 0.0, None)
    area = r_epi**2 - r_cav**2
    k = 1.0 - phase * (1.0 - lv["es"])
    r_cav_p = r_cav * k
    return r_cav_p, np.sqrt(r_cav_p**2 + area)


def render(anat: Anatomy, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free signal (relative units) and full labels (0..3), both (nx, ny, nz)."""
    nx, ny, nz = anat.shape
    pix = anat.spacing[0]
    tis = anat.tissue
    gx = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2) * pix
    gy = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2) * pix
    c, s = math.cos(anat.rot), math.sin(anat.rot)
    px = (c * gx[:, None] + s * gy[None, :])[:, :, None]  # image -> patient frame, (nx, ny, 1)
    py = (-s * gx[:, None] + c * gy[None, :])[:, :, None]
    t = anat.t.astype(np.float32)[None, None, :]
    img = np.full((nx, ny, nz), tis["air"], dtype=np.float32)

    def paint(tissue: str, mask: np.ndarray, value: float | np.ndarray | None = None) -> None:
        nonlocal img
        v = tis[tissue] if value is None else value
        img = img + (v - img) * mask

    b = anat.body
    rho_body = np.sqrt(((px - b["cx"]) / b["ax"]) ** 2 + ((py - b["cy"]) / b["ay"]) ** 2)
    mean_axis = 0.5 * (b["ax"] + b["ay"])
    paint("fat", _soft((rho_body - 1.0) * mean_axis, pix))
    paint("body", _soft((rho_body - 1.0) * mean_axis + b["fat"], pix))
    front = np.clip((b["cy"] - 20.0 - py) / 30.0, 0.0, 1.0)
    shell = _soft((rho_body - 1.0) * mean_axis + b["fat"], pix) - _soft(
        (rho_body - 1.0) * mean_axis + b["fat"] + b["muscle"], pix
    )
    paint("muscle", np.clip(shell, 0, 1) * front)
    for side in (-1.0, 1.0):
        lx = b["cx"] + side * b["lung_x"]
        rho = np.sqrt(((px - lx) / b["lung_ax"]) ** 2 + ((py - b["cy"] + 10.0) / b["lung_ay"]) ** 2)
        paint("lung", _soft((rho - 1.0) * 0.5 * (b["lung_ax"] + b["lung_ay"]), pix))
    lv_ = anat.liver
    grow = np.clip((t - lv_["t0"]) / 0.4, 0.0, 1.0) ** 0.5
    rho_liver = np.sqrt(((px - lv_["cx"]) / lv_["ax"]) ** 2 + ((py - lv_["cy"]) / lv_["ay"]) ** 2)
    paint("liver", _soft(rho_liver * 0.5 * (lv_["ax"] + lv_["ay"]) - 0.5 * (lv_["ax"] + lv_["ay"]) * grow, pix))
    for tissue, bx, by, r, t0, t1 in anat.blobs:
        on = ((anat.t >= t0) & (anat.t <= t1)).astype(np.float32)[None, None, :]
        if not on.any():
            continue
        dist = np.sqrt((px - bx) ** 2 + (py - by) ** 2) - r
        paint(tissue, _soft(dist, pix) * on)

    # heart
    hx = anat.heart[:, 0].astype(np.float32)[None, None, :]
    hy = anat.heart[:, 1].astype(np.float32)[None, None, :]
    lv = anat.lv
    ct, st = math.cos(lv["theta"]), math.sin(lv["theta"])
    du, dv = px - hx, py - hy
    u = ct * du + st * dv
    v = (-st * du + ct * dv) / lv["ecc"]
    rho_lv = np.sqrt(u**2 + v**2)
    ang_lv = _angles(du, dv)
    r_cav, r_epi = lv_radii(anat, phase)
    r_cav = r_cav.astype(np.float32)[None, None, :]
    r_epi = r_epi.astype(np.float32)[None, None, :]
    d_endo = rho_lv - r_cav * _harmonics(ang_lv, anat.lv_harm[0])
    d_epi = rho_lv - r_epi * _harmonics(ang_lv, anat.lv_harm[1])

    rv = anat.rv
    rv_taper = np.sqrt(np.clip(1.0 - (t / rv["end"]) ** 2, 0.0, 1.0))
    rv_k = 1.0 - phase * (1.0 - rv["es"])
    rv_on = rv["a"] * rv_k * rv_taper > 3.5  # below ~3.5 mm the RV has closed (no slivers)
    a = rv["a"] * rv_k * rv_taper + 1e-3
    bb = rv["b"] * (0.2 + 0.8 * rv_taper) * (1.0 - 0.15 * phase)
    cp, sp = math.cos(rv["psi"]), math.sin(rv["psi"])
    dist_c = r_epi + 0.3 * a
    ru = cp * du + sp * dv - dist_c
    rvv = -sp * du + cp * dv
    ru = ru + rv["bend"] * rvv**2 / bb
    rho_rv = np.sqrt((ru / a) ** 2 + (rvv / bb) ** 2) / _harmonics(_angles(ru, rvv), anat.rv_harm)
    d_rv = np.where(rv_on, (rho_rv - 1.0) * a, 1e3)
    outside_lv = 1.0 - _soft(d_epi - 0.5, pix)
    rv_wall = _soft(d_rv - rv["wall"], pix) * outside_lv
    rv_cav = _soft(d_rv, pix) * outside_lv

    peri = anat.pericardial
    if peri["width"] > 0:
        cos_a, sin_a = math.cos(peri["angle"]), math.sin(peri["angle"])
        covered = (ang_lv[0][0] * cos_a + ang_lv[0][1] * sin_a > peri["cover"]).astype(np.float32)
        outer = np.minimum(d_epi, d_rv - rv["wall"])
        paint("fat", np.clip(_soft(outer - peri["width"], pix) - _soft(outer, pix), 0, 1) * covered)
    paint("myo", rv_wall)
    wave = math.cos(lv["flow_angle"]) * px + math.sin(lv["flow_angle"]) * py
    flow = 1.0 + lv["flow"] * np.cos(wave * (2 * math.pi / lv["flow_wave"]) + lv["flow_phase"])
    blood = tis["blood"] * (1.0 - lv["blood_apex"] * t) * flow
    paint("blood", rv_cav, blood)
    m_epi = _soft(d_epi, pix)
    paint("myo", m_epi)
    m_cav = _soft(d_endo, pix)
    paint("blood", m_cav, blood)
    pap_on = ((anat.t > 0.15) & (anat.t < 0.8)).astype(np.float32)[None, None, :]
    for sign in (-1.0, 1.0):
        ang = rv["psi"] + math.pi + sign * 0.9 + lv["pap_angle"]
        pr = r_cav * 0.62
        dist = np.sqrt((px - hx - pr * math.cos(ang)) ** 2 + (py - hy - pr * math.sin(ang)) ** 2) - lv["papillary"] * (
            1 - 0.3 * phase
        )
        paint("myo", _soft(dist, pix) * pap_on * (r_cav > 8.0))

    label = np.zeros((nx, ny, nz), dtype=np.uint8)
    label[rv_cav > 0.5] = 1
    label[m_epi > 0.5] = 2
    label[m_cav > 0.5] = 3
    return img, label
