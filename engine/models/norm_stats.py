"""Running statistics of norm layers: snapshot, restore, and re-estimate them on data (AdaBN).

Recalibration answers "is a swapped model bad because its norms' running statistics do not fit
the activations any more?": every norm with running statistics is reset and put in train mode
with `momentum=None` (PyTorch's cumulative average over the batches seen), the model runs N
batches without gradients, and the norms go back to eval mode with the new statistics. Weights
never change. The same reset corrects interpolated models (REPAIR's "reset BN", Jordan et al.).

`NormModes` also freezes norms in train mode (`momentum=0`: batch statistics in the forward,
running statistics unchanged) for the part of a network upstream of a re-estimated part, which
is what a full recalibration computes there too (engine/swaps/scan.py uses it per variant).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from reuse_console.engine.models.layers import keeps_running_stats

Stats = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def tracked_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._NormBase]:
    """The norms of `model` that keep running statistics, by module path."""
    return {name: m for name, m in model.named_modules() if keeps_running_stats(m)}  # type: ignore[misc]


def snapshot(norms: Mapping[str, nn.Module]) -> Stats:
    """Copies of the running mean, variance and batch count of each norm."""
    out: Stats = {}
    for name, m in norms.items():
        count = m.num_batches_tracked
        out[name] = (
            m.running_mean.detach().clone(),  # type: ignore[union-attr]
            m.running_var.detach().clone(),  # type: ignore[union-attr]
            count.detach().clone() if isinstance(count, torch.Tensor) else None,
        )
    return out


def restore(norms: Mapping[str, nn.Module], stats: Stats) -> None:
    """Put the snapshot's statistics back (in place: cached references stay valid)."""
    with torch.no_grad():
        for name, (mean, var, count) in stats.items():
            m = norms[name]
            m.running_mean.copy_(mean)  # type: ignore[union-attr,operator]
            m.running_var.copy_(var)  # type: ignore[union-attr,operator]
            if count is not None and isinstance(m.num_batches_tracked, torch.Tensor):
                m.num_batches_tracked.copy_(count)


@contextmanager
def norm_modes(
    norms: Mapping[str, nn.Module],
    *,
    accumulate: Iterable[str] = (),
    frozen: Iterable[str] = (),
    reset: bool = True,
) -> Iterator[None]:
    """Norms in `accumulate` averaging over the batches run (train mode, momentum None; reset first
    unless `reset` is False, to go on from the statistics they hold); norms in `frozen` in train
    mode with momentum 0 (batch statistics, running ones unchanged). Modes and momenta are given
    back afterwards; the statistics are not."""
    touched = [*((n, True) for n in accumulate), *((n, False) for n in frozen)]
    saved = [(norms[n], norms[n].training, norms[n].momentum) for n, _ in touched]
    try:
        for name, averaging in touched:
            m = norms[name]
            if averaging and reset:
                m.reset_running_stats()  # type: ignore[operator]
            m.momentum = None if averaging else 0.0
            m.train()
        yield
    finally:
        for m, training, momentum in saved:
            m.momentum = momentum
            m.train(training)


def recalibrate(model: nn.Module, batches: Sequence[torch.Tensor], *, names: Iterable[str] | None = None) -> None:
    """Re-estimate the running statistics of the tracked norms (`names`, default all) in place on
    `batches` (inputs already on the model's device), with the rest of the model in eval mode."""
    norms = tracked_norms(model)
    chosen = list(norms) if names is None else [n for n in names if n in norms]
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), norm_modes(norms, accumulate=chosen):
            for x in batches:
                model(x)
    finally:
        model.train(training)
