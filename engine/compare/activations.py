"""Channel correlations of two models' activations, streamed batch by batch (for activation matching).

For every permutation group one graph node carries exactly that group's channels (its *tap*:
the output of its last norm, else of its conv; perm_spec chooses it). Both models run each validation
batch through the same traced graph; at each tap the sums that a Pearson correlation needs
(counts, sums, sums of squares and the recipient x donor cross products) are added up in
float64, so no activation outlives its batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from reuse_console.engine.compare.perm_spec import PermSpec, traced
from reuse_console.engine.compare.record import rebound
from reuse_console.engine.core.events import Progress, Reporter, silent


class _Taps(fx.Interpreter):
    """Runs a traced graph and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, names: set[str]) -> None:
        super().__init__(gm)
        self.names = names
        self.kept: dict[str, torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.name in self.names:
            self.kept[n.name] = out
        return out


class _Moments:
    """Running sums for the correlation of recipient channel i with donor channel j."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.sr = torch.zeros(channels, dtype=torch.float64)
        self.sd = torch.zeros(channels, dtype=torch.float64)
        self.srr = torch.zeros(channels, dtype=torch.float64)
        self.sdd = torch.zeros(channels, dtype=torch.float64)
        self.srd = torch.zeros((channels, channels), dtype=torch.float64)

    def add(self, r: torch.Tensor, d: torch.Tensor) -> None:
        r = r.detach().movedim(1, 0).reshape(r.shape[1], -1).to("cpu", torch.float64)
        d = d.detach().movedim(1, 0).reshape(d.shape[1], -1).to("cpu", torch.float64)
        self.n += r.shape[1]
        self.sr += r.sum(1)
        self.sd += d.sum(1)
        self.srr += (r * r).sum(1)
        self.sdd += (d * d).sum(1)
        self.srd += r @ d.T

    def correlation(self) -> np.ndarray:
        n = max(self.n, 1)
        mr, md = self.sr / n, self.sd / n
        cov = self.srd / n - torch.outer(mr, md)
        sr = torch.sqrt(torch.clamp(self.srr / n - mr * mr, min=0.0))
        sd = torch.sqrt(torch.clamp(self.sdd / n - md * md, min=0.0))
        return (cov / (torch.outer(sr, sd) + 1e-12)).numpy()


def activation_correlations(
    spec: PermSpec,
    recipient: nn.Module,
    donor: nn.Module,
    batches: Iterable[torch.Tensor],
    *,
    example: Any,
    report: Reporter = silent,
) -> dict[str, np.ndarray]:
    """Per group, the (recipient channel x donor channel) Pearson correlation over every pixel of every batch."""
    gm_r = traced(recipient, example)
    gm_d = rebound(gm_r, donor)  # the same graph (node names) over the donor's modules
    wanted = {spec.taps[g]: g for g in spec.groups}
    moments = {g: _Moments(group.size) for g, group in spec.groups.items()}
    batches = list(batches)
    with torch.inference_mode():
        for i, x in enumerate(batches, start=1):
            taps_r, taps_d = _Taps(gm_r, set(wanted)), _Taps(gm_d, set(wanted))
            taps_r.run(x)
            taps_d.run(x)
            for node, g in wanted.items():
                moments[g].add(taps_r.kept[node], taps_d.kept[node])
            report(Progress(i, len(batches), "activations"))
    return {g: m.correlation() for g, m in moments.items()}
