"""What a scan is made of and what it gives: its variants (which recipient tensors move how far
towards the donor) and the result (Dice per variant, subject and class, with what produced it).

Kept apart from the evaluation (engine/swaps/scan.py) so that readers of stored scans (plans,
reports, the console) need no part of the evaluation engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reuse_console.engine.evaluation.metrics import nanmean
from reuse_console.engine.models.layers import Layer


@dataclass(frozen=True)
class Variant:
    """One evaluated change of the recipient: its tensors, how far towards the donor, and where."""

    layer: str  # layer name ("3", "head"), or a selection ("1-5") for a multi-layer swap
    kind: str  # "RM", or "RM,RV" for a multi-kind swap
    alpha: float
    keys: tuple[str, ...]  # state-dict keys changed
    index: int | None = None  # layer number when `layer` is one numbered layer
    modules: tuple[str, ...] = ()  # modules owning `keys`: variants with equal modules share a cache

    @property
    def id(self) -> str:
        return f"{self.layer}:{self.kind}:{self.alpha:g}"

    @property
    def group(self) -> str:
        return "+".join(self.modules)

    def label(self) -> int | str:
        """The layer as the JSON output shows it: its number, or its name."""
        return self.index if self.index is not None else self.layer


def _owner(key: str) -> str:
    return key.rpartition(".")[0]


def plan_variants(layers: Sequence[Layer], kinds: Sequence[str], alphas: Sequence[float]) -> list[Variant]:
    """Every single (layer, kind, alpha) variant, in layer then kind then alpha order."""
    out: list[Variant] = []
    for layer in layers:
        for kind in kinds:
            if kind not in layer.kinds:
                continue
            key = layer.key(kind)
            for alpha in alphas:
                out.append(Variant(layer.name, kind, float(alpha), (key,), layer.index, (_owner(key),)))
    return out


def swap_variant(layers: Sequence[Layer], targets: Sequence[tuple[str, str]], alpha: float, label: str) -> Variant:
    """One variant changing every (layer name, kind) target at once (the `swap` command)."""
    by_name = {layer.name: layer for layer in layers}
    keys = tuple(by_name[name].key(kind) for name, kind in targets)
    kinds = ",".join(dict.fromkeys(kind for _, kind in targets))
    modules = tuple(sorted({_owner(k) for k in keys}))
    numbers = {by_name[name].index for name, _ in targets}
    index = numbers.pop() if len(numbers) == 1 and len({n for n, _ in targets}) == 1 else None
    return Variant(label, kinds, float(alpha), keys, index, modules)


@dataclass
class ScanResult:
    """Baseline and per-variant Dice per subject and class, with what produced them."""

    name: str
    recipient: str
    donor: str
    data: str
    classes: list[str]
    present: list[bool]
    subjects: list[str]
    baseline: np.ndarray  # (S, C)
    variants: list[Variant]
    dice: np.ndarray  # (V, S, C); NaN rows for variants not evaluated yet
    precision: str = "fp32"
    device: str = "cpu"
    engine: str = ""
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    recalibrated_baseline: np.ndarray | None = None  # (S, C) with --recalibrate (scope downstream: the raw one)
    recalibrated: np.ndarray | None = None  # (V, S, C): each variant with its norm statistics re-estimated
    confirmed: np.ndarray | None = None  # (V,) bool with --confirm: re-evaluated in fp32 (baseline always)
    fast_baseline: np.ndarray | None = None  # (S, C) with --confirm: the low-precision values before it
    fast_dice: np.ndarray | None = None  # (V, S, C)

    def by_class(self, values: np.ndarray) -> dict[str, float | None]:
        """Class name -> value; None for absent classes and NaN (no reference under --empty ignore)."""
        return {c: (float(v) if p and not np.isnan(v) else None) for c, v, p in zip(self.classes, values, self.present)}

    @property
    def baseline_mean(self) -> np.ndarray:
        """(C,) mean Dice over subjects; cells left out by --empty ignore (NaN) do not count."""
        return nanmean(self.baseline, axis=0)

    @property
    def mean(self) -> np.ndarray:
        """(V, C) mean Dice over subjects (NaN cells left out; all NaN: not evaluated yet)."""
        return nanmean(self.dice, axis=1)

    @property
    def done(self) -> np.ndarray:
        """(V,) whether each variant was evaluated: a row of NaN is one not evaluated yet (under
        --empty ignore an evaluated one has NaN only where a reference is empty)."""
        if not len(self.variants):
            return np.zeros(0, dtype=bool)
        return ~np.isnan(self.dice).all(axis=(1, 2))

    @property
    def delta(self) -> np.ndarray:
        """(V, C) change of the mean Dice from the baseline's (negative: the swap hurt)."""
        return self.mean - self.baseline_mean

    @property
    def foreground(self) -> list[int]:
        """The classes a Dice drop is judged on: present ones but background (all, if none is)."""
        return [c for c in range(1, len(self.classes)) if self.present[c]] or list(range(len(self.classes)))

    def fg_means(self, recalibrated: bool = False) -> tuple[float, np.ndarray]:
        """Mean Dice over the foreground classes: the baseline's, and each variant's (V,); raw, or
        with the norm statistics re-estimated (a scan with --recalibrate)."""
        fg = self.foreground
        base, dice = self.baseline, self.dice
        if recalibrated:
            if self.recalibrated is None or self.recalibrated_baseline is None:
                raise ValueError("this scan was not recalibrated")
            base, dice = self.recalibrated_baseline, self.recalibrated
        variants = nanmean(nanmean(dice, axis=1)[:, fg], axis=1) if len(self.variants) else np.zeros(0)
        return float(nanmean(nanmean(base, axis=0)[fg], axis=0)), variants

    def largest_drops(self, n: int) -> list[int]:
        """The `n` evaluated variants whose foreground mean Dice fell most, largest drop first."""
        base, means = self.fg_means()
        done = [i for i in np.argsort(means, kind="stable") if np.isfinite(means[i])]
        return [int(i) for i in done[:n] if base - means[i] > 0]

    def to_json(self) -> dict[str, Any]:
        """The documented `--json` shape: baseline and variants, class names as keys."""
        base = self.baseline_mean
        variants = []
        for i, (v, mean, delta, per_subject) in enumerate(zip(self.variants, self.mean, self.delta, self.dice)):
            variants.append(
                {
                    "layer": v.label(),
                    "kind": v.kind,
                    "alpha": v.alpha,
                    "keys": list(v.keys),
                    "dice": self.by_class(mean),
                    "delta": self.by_class(delta),
                    "per_subject": {s: self.by_class(row) for s, row in zip(self.subjects, per_subject)},
                    **(
                        {}
                        if self.recalibrated is None
                        else {"dice_recalibrated": self.by_class(nanmean(self.recalibrated[i], axis=0))}
                    ),
                    **self._fast_json(i),
                }
            )
        recal = self.recalibrated_baseline
        return {
            "name": self.name,
            "recipient": self.recipient,
            "donor": self.donor,
            "data": self.data,
            "precision": self.precision,
            "device": self.device,
            "engine": self.engine,
            "seconds": self.seconds,
            "baseline": {
                "dice": self.by_class(base),
                "per_subject": {s: self.by_class(row) for s, row in zip(self.subjects, self.baseline)},
                **({} if recal is None else {"dice_recalibrated": self.by_class(nanmean(recal, axis=0))}),
                **(
                    {}
                    if self.fast_baseline is None
                    else {"dice_fast": self.by_class(nanmean(self.fast_baseline, axis=0))}
                ),
            },
            "recalibrate": self.options.get("recalibrate"),
            "confirm": self.options.get("confirm"),
            "empty": self.options.get("empty", "one"),
            "dice_per": self.options.get("per", "subject"),
            "variants": variants,
        }

    def _fast_json(self, i: int) -> dict[str, Any]:
        """With --confirm: whether variant `i` was re-evaluated in fp32, and its low-precision Dice."""
        if self.confirmed is None or self.fast_dice is None:
            return {}
        return {"confirmed": bool(self.confirmed[i]), "dice_fast": self.by_class(nanmean(self.fast_dice[i], axis=0))}

    def confirm_change(self) -> float | None:
        """With --confirm: the largest change of foreground mean Dice the fp32 re-evaluation made
        (baseline and confirmed variants): how far the low-precision pass was off where it mattered."""
        if self.confirmed is None or self.fast_dice is None or self.fast_baseline is None:
            return None
        fg = self.foreground

        def fg_mean(dice: np.ndarray) -> float:
            return float(nanmean(nanmean(dice, axis=0)[fg], axis=0))

        changes = [abs(fg_mean(self.baseline) - fg_mean(self.fast_baseline))]
        for i in np.flatnonzero(self.confirmed):
            changes.append(abs(fg_mean(self.dice[i]) - fg_mean(self.fast_dice[i])))
        return float(max(changes))
