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

from collections.abc import Collection, Mapping
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
    """`state` with every permuted axis gathered by `perms` (tensors without one are kept as they are;
    a second name of a permuted tensor gets the permuted tensor)."""
    out = dict(state)
    for key, axes in spec.axes.items():
        t = state[key]
        for axis, segments in axes.items():
            t = t.index_select(axis, axis_index(segments, perms).to(t.device))
        out[key] = t
    for alias, key in spec.aliases.items():
        if alias in out:
            out[alias] = out[key]
    return out


class WeightMatcher:
    """Both models' tensors laid out once per place a group permutes (that axis first, contiguous,
    float32), so each solve costs one gather of the donor's other axis and one matrix product."""

    def __init__(self, spec: PermSpec, recipient: Mapping[str, torch.Tensor], donor: Mapping[str, torch.Tensor]):
        self.spec = spec
        self.where: dict[str, list[tuple[torch.Tensor, torch.Tensor, tuple[Segment, ...] | None]]] = {}
        self.neighbours: dict[str, list[str]] = {}
        self.telling: dict[str, list[bool]] = {}  # per place: do the recipient's channels differ there at all?
        for g in spec.groups:
            places: list[tuple[torch.Tensor, torch.Tensor, tuple[Segment, ...] | None]] = []
            neighbours: set[str] = set()
            for key, axis, seg in spec.occurrences(g):
                r = recipient[key].detach().to("cpu", torch.float32).movedim(axis, 0)
                d = donor[key].detach().to("cpu", torch.float32).movedim(axis, 0)
                others = [a for a in spec.axes[key] if a != axis]
                assert len(others) <= 1, f"{key} is permuted on more than two axes"
                if others:  # the other permuted axis, moved to position 1
                    r, d = r.movedim(others[0] + (others[0] < axis), 1), d.movedim(others[0] + (others[0] < axis), 1)
                    neighbours.update(x.group for x in spec.axes[key][others[0]] if x.group is not None)
                r = r.narrow(0, seg.start, seg.size).contiguous()
                d = d.narrow(0, seg.start, seg.size).contiguous()
                places.append((r.reshape(seg.size, -1), d, spec.axes[key][others[0]] if others else None))
            self.where[g] = places
            self.telling[g] = [bool((r - r[:1]).abs().max() > 0) for r, _, _ in places]
            self.neighbours[g] = sorted(neighbours)  # itself too when it permutes both axes of a tensor

    def score(
        self, group: str, perms: Mapping[str, torch.Tensor], trusted: Collection[str] | None = None
    ) -> np.ndarray:
        """score[i, j] = inner product of recipient channel i with donor channel j, over every tensor
        the group permutes, the donor's other axis permuted as `perms` says (with `trusted`: only the
        other axis's channels of those groups and of none)."""
        n = self.spec.groups[group].size
        total = torch.zeros((n, n), dtype=torch.float32)
        for r, d, other in self.where[group]:
            if other is not None:
                d = d.index_select(1, axis_index(other, perms))
                if trusted is not None:
                    keep = _kept(other, trusted)
                    r, d = r.reshape(n, d.shape[1], -1)[:, keep], d[:, keep]
            total.addmm_(r.reshape(n, -1), d.reshape(n, -1).T)
        return total.double().numpy()

    def evidence(self, group: str, trusted: Collection[str]) -> float:
        """How many numbers per channel the group's score has from places whose other axis is trusted."""
        n = self.spec.groups[group].size
        total = 0
        for (r, d, other), telling in zip(self.where[group], self.telling[group]):
            if telling:
                total += r.numel() if other is None else r.numel() * len(_kept(other, trusted)) // d.shape[1]
        return total / n


def _kept(segments: tuple[Segment, ...], trusted: Collection[str]) -> torch.Tensor:
    """Positions along an axis whose group is trusted or none."""
    parts = [torch.arange(s.start, s.start + s.size) for s in segments if s.group is None or s.group in trusted]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)


def trusted_start(matcher: WeightMatcher, perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A first permutation per group, solved one group at a time from what is already settled.

    Coordinate ascent from the identity solves a group against neighbours that are still in the
    donor's order, so where little ties a group down on its own (MobileNet's expansions: only a
    depthwise kernel; fresh norms are all alike) it settles in a local optimum (lraspp). Here
    each step solves the group with the most numbers from places that are already trustworthy
    (tensors it alone permutes, axes of groups solved before, unpermuted axes), so the
    information spreads from the input and the depthwise kernels through the graph."""
    out = dict(perms)
    trusted: set[str] = set()
    remaining = list(matcher.spec.groups)
    while remaining:
        evidence = [matcher.evidence(g, trusted) for g in remaining]
        g = remaining.pop(int(np.argmax(evidence)))
        if max(evidence) > 0:
            out[g] = torch.from_numpy(assign(matcher.score(g, out, trusted), matcher.spec.groups[g].blocks))
        trusted.add(g)
    return out


def objective(
    spec: PermSpec,
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
) -> float:
    """Sum over every permuted tensor of <recipient, permuted donor> (what weight matching maximises)."""
    permuted = permute_state(spec, {k: donor[k] for k in spec.axes}, perms)
    return float(sum(torch.sum(recipient[k].double() * permuted[k].double()) for k in spec.axes))


def weight_matching(
    spec: PermSpec,
    recipient: Mapping[str, torch.Tensor],
    donor: Mapping[str, torch.Tensor],
    *,
    seed: int = 0,
    max_sweeps: int = 100,
    start: str = "trusted",
    report: Reporter = silent,
) -> MatchResult:
    """Git Re-Basin's weight matching: sweeps over the groups in random order until none improves,
    from `trusted_start` (or from the identity, `start="identity"`, the textbook algorithm)."""
    matcher = WeightMatcher(spec, recipient, donor)
    perms = {g: torch.arange(group.size) for g, group in spec.groups.items()}
    names = list(spec.groups)
    rng = np.random.default_rng(seed)
    before = objective(spec, recipient, donor, perms)
    if start == "trusted":
        first = trusted_start(matcher, perms)
        if objective(spec, recipient, donor, first) > before:  # the ascent never falls, so neither does the result
            perms = first
    version = dict.fromkeys(names, 0)
    solved: dict[str, tuple[int, ...]] = {}  # group -> its neighbours' versions when it was last solved
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = 0
        for i in rng.permutation(len(names)):
            g = names[i]
            seen = tuple(version[h] for h in matcher.neighbours[g])
            if solved.get(g) == seen:
                continue  # nothing it depends on moved since its last solve: still optimal
            score = matcher.score(g, perms)
            new = assign(score, spec.groups[g].blocks)
            rows = np.arange(len(new))
            old_value = score[rows, perms[g].numpy()].sum()
            new_value = score[rows, new].sum()
            if new_value > old_value + 1e-9 * max(1.0, abs(old_value)):
                perms[g] = torch.from_numpy(new)
                version[g] += 1
                improved += 1
            solved[g] = seen
        report(Progress(sweeps, max_sweeps, f"sweep {sweeps}: {improved} of {len(names)} groups improved"))
        if not improved:
            break
    return MatchResult(perms, sweeps, before, objective(spec, recipient, donor, perms))


def match_correlations(spec: PermSpec, correlations: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Activation matching: each group's permutation from its (recipient x donor) channel correlations."""
    perms: dict[str, torch.Tensor] = {}
    for g, group in spec.groups.items():
        perms[g] = torch.from_numpy(assign(np.nan_to_num(correlations[g]), group.blocks))
    return perms


def identity(groups: Mapping[str, PermGroup]) -> dict[str, torch.Tensor]:
    return {g: torch.arange(group.size) for g, group in groups.items()}
