"""Aligning state dicts in memory: the permutations of a donor for a recipient, and the check that
the donor's function survived (used by `align`, which stores the result, and `rmse --align`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from reuse_console.engine.compare.activations import activation_correlations
from reuse_console.engine.compare.matching import identity, match_correlations, permute_state, weight_matching
from reuse_console.engine.compare.perm_spec import PermSpec, permutation_spec
from reuse_console.engine.core.events import Message, Reporter, Started, silent
from reuse_console.engine.models.layout import spatial_dims
from reuse_console.store.errors import UserError

METHODS: tuple[str, ...] = ("weights", "activations")
TOLERANCE = 1e-5  # largest |output difference| allowed between the donor and its alignment


def align_states(
    model: nn.Module,
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    *,
    method: str = "weights",
    seed: int = 0,
    report: Reporter = silent,
) -> tuple[PermSpec, dict[str, torch.Tensor], int, dict[str, Any]]:
    """Permutation groups of `model` (its architecture) and the donor's permutation for each.

    `inputs` are batches the model takes: the first traces the graph; activation matching runs them all.
    Returns (spec, perms, sweeps, info)."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: use {' or '.join(METHODS)}")
    spec = permutation_spec(model, inputs[0][:1])
    report(Message(f"{len(spec.groups)} permutation groups, {sum(g.size for g in spec.groups.values())} channels"))
    if not spec.groups:
        return spec, {}, 0, {}
    if method == "weights":
        report(Started("weight matching", 100, "sweeps"))
        result = weight_matching(spec, recipient, donor, seed=seed, report=report)
        info = {"objective_before": result.objective_before, "objective_after": result.objective_after}
        return spec, result.perms, result.sweeps, info
    models = []
    for state in (recipient, donor):
        m = copy.deepcopy(model).eval()
        m.load_state_dict(dict(state), strict=False)
        models.append(m)
    report(Started("activations", len(inputs), "batches"))
    corr = activation_correlations(spec, models[0], models[1], inputs, example=inputs[0][:1], report=report)
    perms = match_correlations(spec, corr)
    mean = {g: float(c[range(len(p)), p.numpy()].mean()) for (g, c), p in zip(corr.items(), perms.values())}
    return spec, perms, 1, {"mean_correlation": sum(mean.values()) / max(len(mean), 1)}


def output_difference(
    model: nn.Module,
    a: Mapping[str, torch.Tensor],
    b: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    device: torch.device,
) -> float:
    """Largest |output of a - output of b| over `inputs`, both run in float64 (float32 on MPS)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    runs = []
    for state in (a, b):
        m = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
        m.load_state_dict(dict(state), strict=False)
        runs.append(m)
    worst = 0.0
    with torch.inference_mode():
        for x in inputs:
            xs = x.to(device=device, dtype=dtype)
            flat_a, _ = tree_flatten(runs[0](xs))
            flat_b, _ = tree_flatten(runs[1](xs))
            for u, v in zip(flat_a, flat_b):
                if isinstance(u, torch.Tensor):
                    worst = max(worst, float((u.double() - v.double()).abs().max()) if u.numel() else 0.0)
    return worst


def aligned_donor(
    model: nn.Module,
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    *,
    report: Reporter = silent,
) -> dict[str, torch.Tensor]:
    """The donor's state with its channels permuted to match the recipient's (weight matching), in
    memory (`scan --align`, `swap --align`, `predict`); refused unless its outputs on `inputs` stay
    within TOLERANCE of the donor's (float64, CPU). `model` may sit on any device: a CPU copy is used."""
    cpu = copy.deepcopy(model).cpu().eval()
    recipient = {k: v.detach().cpu() for k, v in recipient.items()}
    donor = {k: v.detach().cpu() for k, v in donor.items()}
    inputs = [x.cpu() for x in inputs]
    spec, perms, _, _ = align_states(cpu, recipient, donor, inputs, report=report)
    aligned = permute_state(spec, donor, perms or identity(spec.groups))
    worst = output_difference(cpu, donor, aligned, inputs, torch.device("cpu"))
    if not worst <= TOLERANCE:
        raise UserError(f"refused: aligning the donor changed its outputs by {worst:.3g} (> {TOLERANCE:g})")
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in perms.values())
    report(Message(f"aligned the donor: {moved} channels moved, outputs within {worst:.2g}"))
    return aligned


def align_to_first(
    model: nn.Module,
    states: Sequence[Mapping[str, torch.Tensor]],
    names: Sequence[str],
    *,
    in_channels: int,
    size: int = 64,
) -> list[dict[str, torch.Tensor]]:
    """Every state after the first aligned to the first by weight matching, in memory (`rmse --align`).

    No data set is named, so the function check runs on a random batch (float64, within 1e-5)."""
    dims = spatial_dims(model) or 2
    example = torch.randn((2, in_channels, *([size] * dims)), generator=torch.Generator().manual_seed(0))
    out = [dict(states[0])]
    for name, state in zip(names[1:], states[1:]):
        spec, perms, _, _ = align_states(model, states[0], state, [example])
        aligned = permute_state(spec, state, perms or identity(spec.groups))
        worst = output_difference(model, state, aligned, [example], torch.device("cpu"))
        if not worst <= TOLERANCE:
            raise UserError(f"refused: aligning {name} changed its outputs by {worst:.3g} (> {TOLERANCE:g})")
        out.append(aligned)
    return out
