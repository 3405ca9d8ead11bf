"""Several scans of one question read together: donors side by side (a trained donor, `init`,
`random:SEED`), raw beside recalibrated, and the mean with a band over recipient/donor pairs.

A reader needs these on one axis to tell a layer that is reusable *from a donor* from one that is
simply robust to any reset, and a drop that recalibration repairs from one it does not. Each line
is the mean foreground Dice after swapping one full tensor (alpha 1), per kind and layer; a line
made of several scans (a `scan --pairs` set) also carries the lowest and highest member, its band.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reuse_console.engine.swaps.scan_store import load_scan
from reuse_console.engine.swaps.variants import ScanResult
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab


@dataclass(frozen=True)
class Line:
    """One curve: a scan, or the mean of a pair set; raw or with norm statistics re-estimated."""

    label: str
    scans: tuple[str, ...]
    recalibrated: bool
    baseline: float  # foreground Dice of the unchanged recipient(s), mean over the members
    mean: np.ndarray  # (K, L) foreground Dice after each swap, mean over members; NaN: no such swap
    low: np.ndarray  # (K, L) the lowest member (equal to `mean` for one scan)
    high: np.ndarray  # (K, L) the highest member

    @property
    def pairs(self) -> int:
        return len(self.scans)


@dataclass(frozen=True)
class Overlay:
    """Lines on one layer x kind axis; the first line is the scan the reader opened."""

    layers: tuple[str, ...]
    index: tuple[int | None, ...]  # layer numbers (None for head, up1 ...)
    kinds: tuple[str, ...]
    lines: tuple[Line, ...]

    def at(self, line: int, layer: str, kind: str) -> tuple[float, float, float] | None:
        """(mean, low, high) of one line at one cell, or None where it has no such swap."""
        li, ki = self.layers.index(layer), self.kinds.index(kind)
        value = self.lines[line].mean[ki, li]
        if not np.isfinite(value):
            return None
        return float(value), float(self.lines[line].low[ki, li]), float(self.lines[line].high[ki, li])


def donor_label(donor: str) -> str:
    """How a donor is named on a curve: `init` and `random` for the re-initialisation controls."""
    if donor == "init":
        return "init"
    if donor.startswith("random:"):
        return "random"
    return donor


def pair_set(scan: ScanResult) -> str | None:
    """The `--pairs` text a scan was run with (its set's identity), or None for a single scan."""
    value = scan.options.get("pairs")
    return str(value) if value else None


def _full_swaps(scan: ScanResult) -> dict[tuple[str, str], int]:
    """(layer, kind) -> variant row of every full (alpha 1) single-tensor swap."""
    return {(v.layer, v.kind): i for i, v in enumerate(scan.variants) if v.alpha == 1.0 and len(v.keys) == 1}


def _axes(scans: Sequence[ScanResult]) -> tuple[list[str], list[int | None], list[str]]:
    """Layers (forward order) and kinds of the first scan; every other must cover the same layers."""
    first = scans[0]
    layers: dict[str, int | None] = {}
    kinds: dict[str, None] = {}
    for v in first.variants:
        if v.alpha == 1.0 and len(v.keys) == 1:
            layers.setdefault(v.layer, v.index)
            kinds.setdefault(v.kind, None)
    if not layers:
        raise UserError(f"scan {first.name!r} has no full (alpha 1) single-tensor swaps to overlay")
    for scan in scans[1:]:
        other = {v.layer for v in scan.variants if v.alpha == 1.0 and len(v.keys) == 1}
        if not other & set(layers):
            raise UserError(
                f"scans {first.name!r} and {scan.name!r} share no layers: overlay scans of one architecture"
            )
    return list(layers), list(layers.values()), list(kinds)


def _fg_grid(scan: ScanResult, layers: list[str], kinds: list[str], recalibrated: bool) -> tuple[float, np.ndarray]:
    """The baseline and a (K, L) grid of foreground Dice after each full single-tensor swap."""
    base, means = scan.fg_means(recalibrated=recalibrated)
    grid = np.full((len(kinds), len(layers)), np.nan)
    where = _full_swaps(scan)
    for ki, kind in enumerate(kinds):
        for li, layer in enumerate(layers):
            row = where.get((layer, kind))
            if row is not None:
                grid[ki, li] = means[row]
    return base, grid


def _groups(scans: Sequence[ScanResult]) -> list[list[ScanResult]]:
    """Scans of one `--pairs` set together (in the order first seen), every other scan alone."""
    groups: dict[str, list[ScanResult]] = {}
    for scan in scans:
        key = pair_set(scan)
        groups.setdefault(f"set:{key}" if key else f"scan:{scan.name}", []).append(scan)
    return list(groups.values())


def _label(members: list[ScanResult]) -> str:
    """A scan's donor; a pair set's donor, or the donors' common stem (`unet-ae*` for seed twins);
    `aligned` when the donor was aligned on the fly (`scan --align`)."""
    donors = list(dict.fromkeys(donor_label(s.donor) + (" aligned" if s.options.get("align") else "") for s in members))
    if len(members) == 1:
        return donors[0]
    stem = os.path.commonprefix(donors).rstrip("-_:")
    name = donors[0] if len(donors) == 1 else f"{stem}*" if len(stem) >= 2 else f"{donors[0]} …"
    return f"{name} ×{len(members)} pairs"


def _line(members: list[ScanResult], layers: list[str], kinds: list[str], recalibrated: bool) -> Line:
    bases, grids = zip(*(_fg_grid(s, layers, kinds, recalibrated) for s in members))
    stack = np.stack(grids)
    with np.errstate(all="ignore"):
        # a cell missing in any member stays missing: a band over fewer pairs would mislead
        mean = stack.mean(axis=0)
        low, high = stack.min(axis=0), stack.max(axis=0)
    label = _label(members) + (" recal" if recalibrated else "")
    return Line(label, tuple(s.name for s in members), recalibrated, float(np.mean(bases)), mean, low, high)


def build_overlay(scans: Sequence[ScanResult]) -> Overlay:
    """Lines for `scans` (the first is the one in focus): one per scan or pair set, and a
    recalibrated line beside each whose members were all scanned with --recalibrate."""
    if not scans:
        raise UserError("name at least one scan to overlay")
    layers, index, kinds = _axes(scans)
    lines: list[Line] = []
    for members in _groups(scans):
        lines.append(_line(members, layers, kinds, False))
        if all(s.recalibrated is not None and s.recalibrated_baseline is not None for s in members):
            lines.append(_line(members, layers, kinds, True))
    return Overlay(tuple(layers), tuple(index), tuple(kinds), tuple(lines))


def set_members(lab: Lab, scans: Sequence[ScanResult]) -> list[ScanResult]:
    """Every finished scan of the lab in the `--pairs` sets of `scans` (those included)."""
    keys = {key for key in (pair_set(s) for s in scans) if key}
    if not keys:
        return []
    return [load_scan(lab, e.id) for e in lab.entries("scans") if e.ok and e.summary.get("pairs") in keys]


def related_scans(lab: Lab, ref: str, limit: int = 8) -> list[ScanResult]:
    """The scan `ref` and the lab's other finished scans of the same recipient on the same data
    (other donors, init, random; up to `limit`), with every other member of their `--pairs` sets."""
    first = load_scan(lab, ref)
    entries = [e for e in lab.entries("scans") if e.ok and e.id != first.name]
    names = [first.name]
    for entry in entries:
        s = entry.summary
        if len(names) < limit and s.get("recipient") == first.recipient and s.get("data") == first.data:
            names.append(entry.id)
    chosen = [first] + [load_scan(lab, n) for n in names[1:]]
    return chosen + [s for s in set_members(lab, chosen) if s.name not in names]
