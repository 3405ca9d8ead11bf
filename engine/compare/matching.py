"""Choosing one permutation per group: weight matching (Git Re-Basin) and activation matching.

A permutation `perm` of a group puts the donor's channel `perm[i]` at position `i`. Weight
matching (Ainsworth et al. 2023, "Git Re-Basin", algorithm 1) maximises the summed inner product
of the recipient's tensors with the permuted donor's, sum_k <W_r[k], P W_d[k]>. That is one
linear assignment problem per group when the other groups are held fixed, so groups are solved
one at a time in a random order, and the sweep repeats until no group improves (coordinate
ascent: the objective never falls). Activation matching solves each group once, on the
correlation of the two models' activations of that group's channels over the validation slices.

A GroupNorm keeps blocks of channels together, so its group may only move whole blocks and
reorder channels inside them: the block assignment is itself a linear assignment problem whose
scores are the best assignments inside each pair of blocks, which is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from reuse_console.engine.compare.perm_spec import PermGroup, PermSpec, Segment
from reuse_console.engine.core.events import Progress, Reporter, silent


@dataclass
class MatchResult:
    """The permutations, and how the matching went (sweeps, objective before and after)."""

    perms: dict[str, torch.Tensor]
    sweeps: int
    objective_before: float
    objective_after: float


def assign(score: np.ndarray, blocks: int = 1) -> np.ndarray:
    """perm maximising sum_i score[i, perm[i]] (whole blocks moved together when blocks > 1)."""
    if blocks <= 1:
        _, cols = linear_sum_assignment(score, maximize=True)
        return np.asarray(cols, dtype=np.int64)
    n = score.shape[0]
    b = n // blocks
    inner = {}
    outer = np.empty((blocks, blocks))
    for i in range(blocks):
        for j in range(blocks):
            part = score[i * b : (i + 1) * b, j * b : (j + 1) * b]
            _, cols = linear_sum_assignment(part, maximize=True)
            inner[i, j] = cols
            outer[i, j] = part[np.arange(b), cols].sum()
    _, chosen = linear_sum_assignment(outer, maximize=True)
    return np.concatenate([j * b + inner[i, int(j)] for i, j in enumerate(chosen)]).astype(np.int64)


def axis_index(segments: tuple[Segment, ...], perms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The gather index of one tensor axis: each segment's channels in its group's permuted order."""
    parts = [seg.start + (perms[seg.group] if seg.group is not None else torch.arange(seg.size)) for seg in segments]
    return torch.cat(parts)


def permute_state(
    spec: PermSpec, state: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """`state` with every permuted axis gathered by `perms` (tensors without one are kept as they are)."""
    out = dict(state)
    for key, axes in spec.axes.items():
        t = state[key]
        for axis, segments in axes.items():
            t = t.index_select(axis, axis_index(segments, perms).to(t.device))
        out[key] = t
    return out


def _unfold(t: torch.Tensor, axis: int, seg: Segment) -> torch.Tensor:
    """The segment's channels of `t` along `axis`, as rows (channels, everything else)."""
    return t.narrow(axis, seg.start, seg.size).movedim(axis, 0).reshape(seg.size, -1)


class WeightMatcher:
    """Holds both models' tensors (float64) and the occurrences of each group, for repeated solves."""

    def __init__(self, spec: PermSpec, recipient: Mapping[str, torch.Tensor], donor: Mapping[str, torch.Tensor]):
        self.spec = spec
        self.r = {k: recipient[k].detach().to("cpu", torch.float64) for k in spec.axes}
        self.d = {k: donor[k].detach().to("cpu", torch.float64) for k in spec.axes}
        self.where = {g: list(spec.occurrences(g)) for g in spec.groups}

    def score(self, group: str, perms: Mapping[str, torch.Tensor]) -> np.ndarray:
        """score[i, j] = inner product of recipient channel i with donor channel j, over every tensor
        the group permutes, the donor's other axes permuted as `perms` says."""
        n = self.spec.groups[group].size
        total = torch.zeros((n, n), dtype=torch.float64)
        for key, axis, seg in self.where[group]:
            d = self.d[key]
            for other, segments in self.spec.axes[key].items():
                if other != axis:
                    d = d.index_select(other, axis_index(segments, perms))
            total += _unfold(self.r[key], axis, seg) @ _unfold(d, axis, seg).T
        return total.numpy()

    def objective(self, perms: Mapping[str, torch.Tensor]) -> float:
        permuted = permute_state(self.spec, self.d, perms)
        return float(sum(torch.sum(self.r[k] * permuted[k]) for k in self.r))


def weight_matching(
    spec: PermSpec,
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    *,
    seed: int = 0,
    max_sweeps: int = 100,
    report: Reporter = silent,
) -> MatchResult:
    """Git Re-Basin's weight matching: sweeps over the groups in random order until none improves."""
    matcher = WeightMatcher(spec, recipient, donor)
    perms = {g: torch.arange(group.size) for g, group in spec.groups.items()}
    names = list(spec.groups)
    rng = np.random.default_rng(seed)
    before = matcher.objective(perms)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = 0
        for i in rng.permutation(len(names)):
            g = names[i]
            score = matcher.score(g, perms)
            new = assign(score, spec.groups[g].blocks)
            rows = np.arange(len(new))
            old_value = score[rows, perms[g].numpy()].sum()
            new_value = score[rows, new].sum()
            if new_value > old_value + 1e-12 * max(1.0, abs(old_value)):
                perms[g] = torch.from_numpy(new)
                improved += 1
        report(Progress(sweeps, max_sweeps, f"sweep {sweeps}: {improved} of {len(names)} groups improved"))
        if not improved:
            break
    return MatchResult(perms, sweeps, before, matcher.objective(perms))


def match_correlations(spec: PermSpec, correlations: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Activation matching: each group's permutation from its (recipient x donor) channel correlations."""
    perms: dict[str, torch.Tensor] = {}
    for g, group in spec.groups.items():
        perms[g] = torch.from_numpy(assign(np.nan_to_num(correlations[g]), group.blocks))
    return perms


def identity(groups: Mapping[str, PermGroup]) -> dict[str, torch.Tensor]:
    return {g: torch.arange(group.size) for g, group in groups.items()}
