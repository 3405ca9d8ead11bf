"""An interactive swap session: recipient, donor and validation batches loaded once, swaps on demand.

The console's Swap lab tries one swap set after another. Loading the models and the data set
and computing the baseline happen once, when the session opens; each `evaluate` then applies
the swap in place (`engine.swap.Swap`), runs the validation batches through the recipient
(`engine.evaluate.evaluate_seg`), and restores the recipient bit-exactly. So one try costs one
evaluation of the model, the same as a single variant of a naive scan.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from reuse_console.store.errors import UserError

from .layers import KINDS, Layer, LayerIndex
from .metrics import DiceResult
from .swap import Swap, check_alpha, check_compatible, donor_like, model_tensors

Target = tuple[str, str]  # (layer name, kind)


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
        lab: Any,
        recipient: str,
        donor: str,
        data: str | None = None,
        *,
        split: str = "val",
        device: str = "auto",
        precision: str = "fp32",
        batch: int = 32,
    ) -> None:
        from .batches import resize_slices
        from .data.slices import load_slices
        from .device import check_precision, memory_format, pick_device
        from .evaluate import eval_batches
        from .models.registry import load_model, model_in_channels

        self.lab = lab
        self.recipient_ref, self.donor_ref = recipient, donor
        self.device = pick_device(device)
        self.precision = check_precision(precision, self.device)
        self.model, self.meta = load_model(lab, recipient, device=self.device)
        if self.meta.task != "seg":
            raise UserError(f"recipient {recipient!r} is a {self.meta.task} model: the Swap lab measures Dice, choose a seg model")
        donor_model, donor_meta = load_model(lab, donor, device=self.device)
        check_compatible(
            self.model.state_dict(), donor_model.state_dict(),
            recipient_arch=self.meta.arch, donor_arch=donor_meta.arch, names=(recipient, donor),
        )
        self.donor = {k: v.detach() for k, v in model_tensors(donor_model).items()}
        self.donor_meta = donor_meta
        self.index = LayerIndex.from_model(self.model, model_in_channels(self.meta.arch_config))
        self.model = self.model.to(memory_format=memory_format(self.device))
        self.data = data or self.meta.data
        if not self.data:
            raise UserError(f"recipient {recipient!r} does not say which data set it was trained on: choose one")
        slices = load_slices(lab, self.data)
        out = self.meta.arch_config.get("out_channels")
        if out is not None and int(out) != len(slices.classes):
            raise UserError(f"{recipient!r} predicts {out} classes but data set {self.data!r} has {len(slices.classes)}")
        size = self.meta.extra.get("size")
        if size and int(size) != slices.size:
            slices = resize_slices(slices, int(size))
        self.split = split
        self.classes, self.present = list(slices.classes), list(slices.present)
        self.batches, self.subjects = eval_batches(slices, split, batch=batch)
        if not self.subjects:
            raise UserError(f"data set {self.data!r} has no {split} subjects")
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
        from .evaluate import evaluate_seg

        keys = self.keys(targets)
        start = time.perf_counter()
        donor = donor_like(self.donor, self.model, keys)
        with Swap(self.model, donor, keys, alpha), torch.inference_mode():
            result = evaluate_seg(self.model, self.batches, self.subjects, self.classes, self.present, self.device, self.precision)
        return result, time.perf_counter() - start

    def _outcome(self, number: int, targets: tuple[Target, ...], alpha: float, result: DiceResult, seconds: float) -> SwapOutcome:
        dice = result.by_class()
        base = self.baseline.dice if number else dice
        delta = {c: (None if v is None or base.get(c) is None else v - base[c]) for c, v in dice.items()}
        return SwapOutcome(number, targets, alpha, dice, result.dice_fg, delta, seconds, result)

    def evaluate(self, targets: Iterable[Target], alpha: float = 1.0) -> SwapOutcome:
        """Swap `targets` towards the donor by `alpha`, evaluate, restore; the outcome joins the history."""
        order = {layer.name: i for i, layer in enumerate(self.index.layers)}
        chosen = tuple(sorted(set(targets), key=lambda t: (order.get(t[0], len(order)), KINDS.index(t[1]) if t[1] in KINDS else 9)))
        if not chosen:
            raise UserError("nothing to swap: choose at least one layer kind")
        alpha = check_alpha(alpha)
        outcome = self._outcome(len(self.history) + 1, chosen, alpha, *self._run(chosen, alpha))
        self.history.append(outcome)
        return outcome
