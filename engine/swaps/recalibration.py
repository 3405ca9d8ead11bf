"""Recalibrated variants: each variant's norm statistics re-estimated on training batches (AdaBN).

A scan with `Calibration` evaluates every variant as: swap its tensors, re-estimate the running
statistics of the norms it affects on N calibration batches, evaluate, restore. With scope `all`
every tracked norm is re-estimated; the norms a variant cannot affect (upstream of its first
changed module) get the same statistics for every variant, so the model is recalibrated once up
front and, per variant, only the norms its downstream part runs are re-estimated, from the
scan's cached activations of the calibration batches (upstream norms run in train mode with
momentum 0, as they do during a full recalibration). With scope `downstream` only those norms
are re-estimated and the others keep the recipient's statistics. On the full-forward fallback a
variant's downstream norms are those that run after its first changed module.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reuse_console.engine.models.norm_stats import Stats, norm_modes, recalibrate, restore, snapshot, tracked_norms
from reuse_console.engine.swaps.partial import Downstream
from reuse_console.store.errors import UserError

SCOPES = ("all", "downstream")


@dataclass(frozen=True)
class Calibration:
    """The batches norm statistics are re-estimated on (inputs on the device) and the scope."""

    batches: Sequence[torch.Tensor]
    scope: str = "all"

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise UserError(f"unknown --recalibrate-scope {self.scope!r}: use {' or '.join(SCOPES)}")
        if not self.batches:
            raise UserError("recalibration needs at least one training batch")


class Recalibrator:
    """Per-variant norm statistics for one evaluation of variants; the model's own are put back."""

    def __init__(self, model: nn.Module, calibration: Calibration) -> None:
        self.model, self.calibration = model, calibration
        self.norms = tracked_norms(model)
        self.original = snapshot(self.norms)
        if calibration.scope == "all":
            recalibrate(model, calibration.batches)
        self.base = snapshot(self.norms)  # what every variant starts from
        self.stash: dict[int, Stats] = {}
        self._order: dict[str, int] | None = None

    def close(self) -> None:
        restore(self.norms, self.original)

    def forget(self, members: Sequence[int]) -> None:
        """Drop the statistics of `members` (their chunk is evaluated again)."""
        for i in members:
            self.stash.pop(i, None)

    @contextmanager
    def calibrating(self) -> Iterator[None]:
        """The calibration passes: upstream norms in train mode (scope all) or eval (downstream)."""
        frozen = list(self.norms) if self.calibration.scope == "all" else []
        try:
            with norm_modes(self.norms, frozen=frozen):
                yield
        finally:
            restore(self.norms, self.base)

    def accumulate(self, i: int, modules: Sequence[str], downstream: Downstream) -> None:
        """One calibration batch of variant `i` (its tensors swapped in): its norms go on averaging."""
        names = self._downstream_norms(modules, downstream)
        first = i not in self.stash
        if not first:
            restore(self.norms, self.stash[i])
        with norm_modes(self.norms, accumulate=names, reset=first):
            downstream.run()
        self.stash[i] = snapshot({n: self.norms[n] for n in names})
        restore(self.norms, {n: self.base[n] for n in names})

    @contextmanager
    def using(self, i: int) -> Iterator[None]:
        """Variant `i`'s re-estimated statistics in the model while it is evaluated."""
        stats = self.stash.get(i, {})
        restore(self.norms, stats)
        try:
            yield
        finally:
            restore(self.norms, {n: self.base[n] for n in stats})

    def _downstream_norms(self, modules: Sequence[str], downstream: Downstream) -> list[str]:
        paths = downstream.module_paths()
        if paths is None:  # a full forward
            if self.calibration.scope == "all":
                return list(self.norms)
            return self._after(modules)
        return [n for n in self.norms if any(n == p or n.startswith(p + ".") for p in paths)]

    def _after(self, modules: Sequence[str]) -> list[str]:
        """Norms that run after the first of `modules` in forward order (the fallback's downstream)."""
        order = self._forward_order()
        start = min((order[m] for m in modules if m in order), default=0)
        return [n for n in self.norms if order.get(n, -1) >= start]

    def _forward_order(self) -> dict[str, int]:
        if self._order is None:
            order: dict[str, int] = {}

            def hook_for(path: str) -> Any:
                def hook(*_: Any) -> None:
                    order.setdefault(path, len(order))

                return hook

            handles = [m.register_forward_pre_hook(hook_for(p)) for p, m in self.model.named_modules() if p]
            try:
                with torch.no_grad():
                    self.model(self.calibration.batches[0])
            finally:
                for h in handles:
                    h.remove()
            self._order = order
        return self._order
