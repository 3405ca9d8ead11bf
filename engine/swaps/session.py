"""An interactive swap session: recipient, donor and validation batches loaded once, swaps on demand.

The console's Swap lab tries one swap set after another. Loading the models and the data set
(`engine.scan_lab.load_inputs`, the same checks as `reuse-console swap`) and computing the
baseline happen once, when the session opens; each `evaluate` then applies
the swap in place (`engine.swap.Swap`), evaluates it the way a scan evaluates one variant
(`engine.swaps.scan.evaluate_variants`: only the part after the first changed module re-runs,
falling back to the full forward when the model cannot be traced), and restores the recipient
bit-exactly. With `full_forward` the whole recipient runs per try (`engine.evaluate.evaluate_seg`),
as `reuse-console swap --full-forward` does. A session is used from one thread at a time (the
console runs one evaluation after another).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reuse_console.engine.evaluation.evaluate import evaluate_seg
from reuse_console.engine.evaluation.metrics import DiceResult
from reuse_console.engine.models.layers import KINDS, Layer
from reuse_console.engine.models.layout import with_layout
from reuse_console.engine.models.registry import checkpoint_path
from reuse_console.engine.swaps.recalibration import Calibration
from reuse_console.engine.swaps.scan_inputs import calibration_for, evaluate_loaded, load_inputs
from reuse_console.engine.swaps.scan_store import write_scan
from reuse_console.engine.swaps.swap import Swap, SwapSpec, check_alpha, donor_like
from reuse_console.engine.swaps.variants import ScanResult, swap_variant
from reuse_console.store.checkpoints import read_meta
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

Target = tuple[str, str]  # (layer name, kind)
RECALIBRATE_BATCHES = 8  # the Swap lab's recalibration: batches of the training subjects (as --recalibrate 8)


@dataclass(frozen=True)
class Recalibrated:
    """A swap evaluated again with its norm statistics re-estimated, and the baseline so treated."""

    batches: int  # calibration batches used
    baseline: DiceResult
    result: DiceResult

    def dice(self) -> dict[str, float | None]:
        return self.result.by_class()


@dataclass(frozen=True)
class SwapOutcome:
    """One evaluated swap set: Dice per class (means over subjects) and the change from baseline."""

    number: int  # 0 is the baseline, then 1, 2, ... in the order tried
    targets: tuple[Target, ...]
    alpha: float
    dice: dict[str, float | None]
    dice_fg: float
    delta: dict[str, float | None]
    seconds: float
    result: DiceResult = field(repr=False, compare=False)
    recalibrated: Recalibrated | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        """`3 RM,RV; 5 W (alpha 0.5)` or `baseline`."""
        if not self.targets:
            return "baseline"
        by_layer: dict[str, list[str]] = {}
        for layer, kind in self.targets:
            by_layer.setdefault(layer, []).append(kind)
        text = "; ".join(f"{layer} {','.join(kinds)}" for layer, kinds in by_layer.items())
        return text + (f" (alpha {self.alpha:g})" if self.alpha != 1.0 else "")


class SwapSession:
    """Recipient (a seg model), donor and data set, kept loaded between swaps."""

    def __init__(
        self,
        lab: Lab,
        recipient: str,
        donor: str,
        data: str | None = None,
        *,
        split: str = "val",
        device: str = "auto",
        precision: str = "fp32",
        batch: int = 32,
        full_forward: bool = False,
    ) -> None:
        self.lab = lab
        self.full_forward = full_forward  # may be changed between tries
        self.recalibrate: int | None = None  # batches to re-estimate norm statistics on (may change between tries)
        self._recal_baseline: dict[int, tuple[Calibration, DiceResult]] = {}
        self.recipient_ref, self.donor_ref = recipient, donor
        if data is None:
            data = read_meta(checkpoint_path(lab, recipient)).data
            if not data:
                raise UserError(f"recipient {recipient!r} does not say which data set it was trained on: choose one")
        self.data, self.split = data, split
        self.loaded = load_inputs(
            lab, recipient, donor, data, device=device, precision=precision, batch=batch, split=split
        )

        self.model = with_layout(self.loaded.model, self.loaded.device)
        self.meta, self.index = self.loaded.meta, self.loaded.index
        self.device, self.precision = self.loaded.device, self.loaded.precision
        self.donor = self.loaded.donor
        self.classes, self.present = self.loaded.classes, self.loaded.present
        self.batches, self.subjects = self.loaded.batches, self.loaded.subjects
        self.history: list[SwapOutcome] = []
        self.baseline = self._outcome(0, (), 1.0, *self._run((), 1.0))

    @property
    def layers(self) -> list[Layer]:
        return self.index.layers

    def keys(self, targets: Iterable[Target]) -> list[str]:
        """State-dict keys of (layer, kind) targets; UserError for a kind a layer lacks."""
        out = []
        for layer, kind in targets:
            if kind not in KINDS:
                raise UserError(f"unknown kind {kind!r}: use {', '.join(KINDS)}")
            out.append(self.index.get(layer).key(kind))
        return out

    def _run(self, targets: tuple[Target, ...], alpha: float) -> tuple[DiceResult, float]:
        keys = self.keys(targets)
        start = time.perf_counter()
        if targets and not self.full_forward:
            variant = swap_variant(self.index.layers, targets, alpha, "session")
            _, dice, engine = self._evaluate([variant], None, self.baseline.result.per_subject)
            result = DiceResult(
                list(self.classes), list(self.present), list(self.subjects), dice[0], {"engine": engine}
            )
            return result, time.perf_counter() - start
        donor = donor_like(self.donor, self.model, keys)
        with Swap(self.model, donor, keys, alpha), torch.inference_mode():
            result = evaluate_seg(
                self.model, self.batches, self.subjects, self.classes, self.present, self.device, self.precision
            )
        result.extra["engine"] = "full forward"
        return result, time.perf_counter() - start

    def _outcome(
        self, number: int, targets: tuple[Target, ...], alpha: float, result: DiceResult, seconds: float
    ) -> SwapOutcome:
        dice = result.by_class()
        base = self.baseline.dice if number else dice
        delta: dict[str, float | None] = {}
        for c, v in dice.items():
            b = base.get(c)
            delta[c] = None if v is None or b is None else v - b
        return SwapOutcome(number, targets, alpha, dice, result.dice_fg, delta, seconds, result)

    def evaluate(self, targets: Iterable[Target], alpha: float = 1.0) -> SwapOutcome:
        """Swap `targets` towards the donor by `alpha`, evaluate, restore; the outcome joins the history."""
        order = {layer.name: i for i, layer in enumerate(self.index.layers)}
        chosen = tuple(
            sorted(set(targets), key=lambda t: (order.get(t[0], len(order)), KINDS.index(t[1]) if t[1] in KINDS else 9))
        )
        if not chosen:
            raise UserError("nothing to swap: choose at least one layer kind")
        alpha = check_alpha(alpha)
        outcome = self._outcome(len(self.history) + 1, chosen, alpha, *self._run(chosen, alpha))
        if self.recalibrate:
            outcome = replace(outcome, recalibrated=self._recalibrated(chosen, alpha, self.recalibrate))
        self.history.append(outcome)
        return outcome

    def _recalibrated(self, targets: tuple[Target, ...], alpha: float, batches: int) -> Recalibrated:
        """The swap with every norm's statistics re-estimated (AdaBN, scope all), and the baseline so."""
        if batches not in self._recal_baseline:
            calibration = calibration_for(self.loaded, batches, "all", int(self.loaded.extra.get("batch") or 32))
            assert calibration is not None  # batches >= 1
            base, _, _ = self._evaluate([], calibration, None)
            self._recal_baseline[batches] = (calibration, self._result(base))
        calibration, baseline = self._recal_baseline[batches]
        variant = swap_variant(self.index.layers, targets, alpha, "session")
        base_dice = baseline.per_subject
        _, dice, _ = self._evaluate([variant], calibration, base_dice)
        return Recalibrated(len(calibration.batches), baseline, self._result(dice[0]))

    def _evaluate(
        self, variants: list[Any], calibration: Calibration | None, baseline: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, str]:
        return evaluate_loaded(
            self.loaded, variants, baseline=baseline, partial=not self.full_forward, calibration=calibration
        )

    def _result(self, per_subject: np.ndarray) -> DiceResult:
        return DiceResult(list(self.classes), list(self.present), list(self.subjects), per_subject)

    def save(self, outcome: SwapOutcome, name: str | None = None) -> str:
        """Keep `outcome` in the lab as a one-variant scan, as `reuse-console swap` does; returns its id."""
        if not outcome.targets:
            raise UserError("the baseline is not a swap: evaluate one first")
        if name is None:
            name = self.lab.unique_name("scans", f"swap-{_stem(self.recipient_ref)}-vs-{_stem(self.donor_ref)}")
        with self.lab.claim("scans", name, new=True) as path:
            self._write(path, name, outcome)
        return name

    def _write(self, path: Path, name: str, outcome: Any) -> None:
        """Store one evaluated swap as a one-variant scan at `path`."""
        label = ",".join(dict.fromkeys(layer for layer, _ in outcome.targets))
        variant = swap_variant(self.index.layers, outcome.targets, outcome.alpha, label)
        spec = SwapSpec(self.recipient_ref, self.donor_ref, outcome.targets, outcome.alpha)
        options = {
            "recipient": self.recipient_ref,
            "donor": self.donor_ref,
            "data": self.data,
            "layers": label,
            "kinds": variant.kind,
            "alphas": [outcome.alpha],
            "precision": self.precision,
            "split": self.split,
            "batch": self.loaded.extra.get("batch"),
            "size": self.loaded.extra.get("size"),
            "swap": spec.describe(),
            "source": "console swap lab",
        }
        result = ScanResult(
            name,
            self.recipient_ref,
            self.donor_ref,
            self.data,
            self.classes,
            self.present,
            self.subjects,
            self.baseline.result.per_subject,
            [variant],
            outcome.result.per_subject[None, ...],
            self.precision,
            str(self.device),
            f"swap session ({outcome.result.extra.get('engine', 'full forward')})",
            outcome.seconds,
            options,
        )
        if outcome.recalibrated is not None:
            options.update(
                recalibrate=outcome.recalibrated.batches,
                recalibrate_batches=outcome.recalibrated.batches,
                recalibrate_scope="all",
            )
            result.recalibrated_baseline = outcome.recalibrated.baseline.per_subject
            result.recalibrated = outcome.recalibrated.result.per_subject[None, ...]
        write_scan(
            path,
            result,
            provenance={
                "recipient": self.recipient_ref,
                "donor": self.donor_ref,
                "data": self.data,
                "options": options,
                "engine": result.engine,
            },
        )


def _stem(ref: str) -> str:
    """A checkpoint reference as an id part (`checkpoints/x.h5` -> `x`)."""
    name = Path(ref).name
    return name[:-3] if name.endswith(".h5") else name
