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
Norm = nn.modules.batchnorm._NormBase


def tracked_norms(model: nn.Module) -> dict[str, Norm]:
    """The norms of `model` that keep running statistics, by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Norm) and keeps_running_stats(m)}


def _buffers(m: Norm) -> tuple[torch.Tensor, torch.Tensor]:
    if m.running_mean is None or m.running_var is None:
        raise ValueError(f"{type(m).__name__} keeps no running statistics")
    return m.running_mean, m.running_var


def snapshot(norms: Mapping[str, Norm]) -> Stats:
    """Copies of the running mean, variance and batch count of each norm."""
    out: Stats = {}
    for name, m in norms.items():
        mean, var = _buffers(m)
        count = m.num_batches_tracked
        out[name] = (mean.detach().clone(), var.detach().clone(), None if count is None else count.detach().clone())
    return out


def restore(norms: Mapping[str, Norm], stats: Stats) -> None:
    """Put the snapshot's statistics back (in place: cached references stay valid)."""
    with torch.no_grad():
        for name, (mean, var, count) in stats.items():
            m = norms[name]
            own_mean, own_var = _buffers(m)
            own_mean.copy_(mean)
            own_var.copy_(var)
            if count is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(count)


@contextmanager
def norm_modes(
    norms: Mapping[str, Norm],
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
                m.reset_running_stats()
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
