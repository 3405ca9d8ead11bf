"""Reuse plans: which of a donor's tensors a new model can take over, and why.

A plan lists every (layer, kind) tensor of an architecture (its *universe*, from the layer
index) and marks each reusable or not. `infer_plan` decides from evidence: a scan (Dice of the
recipient with one donor tensor swapped in) and/or an RMSE comparison of the two models. The
paper reports a plan by its non-reusable tensors ("RM: 1,17; W: 1,6,11; B: 1") and the share
of tensors reused, where each layer's each kind counts one (its 92%); the share of parameter
elements reused is the other honest number, since one conv W outweighs many BN vectors.

Plans are stored as plans/<name>.h5 (one row per tensor, see store/SCHEMA.md) and can be
exported to TOML, edited by hand and imported again (engine/reuse/plan_toml.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.core.numbers import finite_or_none
from reuse_console.engine.evaluation.metrics import nanmean
from reuse_console.engine.models.layers import KINDS, Layer, LayerIndex
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import atomic_h5, attr_str, get_json, open_h5, read_strings, set_json, stamp, write_strings
from reuse_console.store.lab import Lab

KIND = "plan"
COMBINE = ("and", "or")
TOLERANCE = 1e-9  # a drop printed as 0.050 passes --max-dice-drop 0.05 despite float rounding


@dataclass(frozen=True)
class PlanTensor:
    """One tensor of the plan's universe, the decision about it, and the evidence for it."""

    layer: str  # layer name: "3", or "head", "up1" for convs with no BN
    index: int | None  # layer number, None for unnumbered layers
    kind: str  # RM RV RW RB W B
    key: str  # state-dict key
    numel: int
    reusable: bool
    dice_drop: float | None = None  # worst foreground Dice drop when swapped (from a scan)
    rmse: float | None = None  # RMSE between recipient and donor (from a comparison)


@dataclass
class ReusePlan:
    """A set of reusable (layer, kind) tensors over a universe of tensors, with provenance."""

    name: str
    arch: str
    tensors: list[PlanTensor]
    criteria: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def reusable(self) -> set[tuple[str, str]]:
        """(layer name, kind) of every reusable tensor."""
        return {(t.layer, t.kind) for t in self.tensors if t.reusable}

    @property
    def not_reusable(self) -> list[PlanTensor]:
        return [t for t in self.tensors if not t.reusable]

    def keys(self) -> list[str]:
        """State-dict keys to take from the donor, in layer order."""
        return [t.key for t in self.tensors if t.reusable]

    def tensor_share(self) -> float:
        """Share of tensors reused, each layer's each kind counting one (the paper's 92%)."""
        if not self.tensors:
            return float("nan")
        return sum(t.reusable for t in self.tensors) / len(self.tensors)

    def element_share(self) -> float:
        """Share of parameter elements (numbers) reused; running statistics count as elements."""
        total = sum(t.numel for t in self.tensors)
        if total == 0:
            return float("nan")
        return sum(t.numel for t in self.tensors if t.reusable) / total

    def with_reusable(self, reusable: Iterable[tuple[str, str]]) -> ReusePlan:
        """The same universe with another reusable set (what hand-editing a plan does)."""
        chosen = set(reusable)
        known = {(t.layer, t.kind) for t in self.tensors}
        unknown = sorted(chosen - known)
        if unknown:
            layer, kind = unknown[0]
            raise UserError(f"plan {self.name!r} has no tensor {kind} of layer {layer}")
        tensors = [replace(t, reusable=(t.layer, t.kind) in chosen) for t in self.tensors]
        return replace(self, tensors=tensors)

    def summary(self) -> dict[str, Any]:
        """What listings and `--json` show."""
        return {
            "arch": self.arch,
            "tensors": len(self.tensors),
            "reused": sum(t.reusable for t in self.tensors),
            "tensor_share": _round(self.tensor_share()),
            "element_share": _round(self.element_share()),
            "not_reusable": format_not_reusable(self),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.summary(),
            "criteria": self.criteria,
            "provenance": self.provenance,
            "table": [
                {
                    "layer": t.layer,
                    "index": t.index,
                    "kind": t.kind,
                    "key": t.key,
                    "numel": t.numel,
                    "reusable": t.reusable,
                    "dice_drop": t.dice_drop,
                    "rmse": t.rmse,
                }
                for t in self.tensors
            ],
        }


def _round(value: float, digits: int = 4) -> float | None:
    number = finite_or_none(value)
    return None if number is None else round(number, digits)


def format_not_reusable(plan: ReusePlan) -> str:
    """The paper's form, kinds in RM RV RW RB W B order: "RM: 1,17; W: 1,6,11; B: 1" ("" if none)."""
    parts = []
    for kind in KINDS:
        layers = [t.layer for t in plan.tensors if t.kind == kind and not t.reusable]
        if layers:
            parts.append(f"{kind}: {','.join(layers)}")
    return "; ".join(parts)


def universe(layers: LayerIndex | Iterable[Layer]) -> list[PlanTensor]:
    """Every tensor of every layer, layer order then kind order, all marked not reusable."""
    out: list[PlanTensor] = []
    for layer in layers:
        for kind in layer.kinds:
            out.append(PlanTensor(layer.name, layer.index, kind, layer.key(kind), int(layer.numel[kind]), False))
    return out


# -- inference ----------------------------------------------------------------------------------


def scan_dice_drops(scan: Any) -> dict[str, float]:
    """Worst foreground Dice drop per swapped state-dict key, from a scan's full (alpha 1) swaps.

    Drop of a class = baseline mean Dice - swapped mean Dice (means over subjects); the worst is
    the largest over the present foreground classes (class 0, background, is not judged). A
    variant with no value for a present class (not evaluated yet) gives no evidence.
    """
    fg = [c for c, p in enumerate(scan.present) if p and c > 0]
    if not fg:
        raise UserError(f"scan {scan.name!r} has no present foreground class to judge Dice drops on")
    base = nanmean(scan.baseline, axis=0)  # NaN cells: left out under --empty ignore
    means = nanmean(scan.dice, axis=1) if len(scan.variants) else np.zeros((0, len(base)))
    drops: dict[str, float] = {}
    full = [i for i, v in enumerate(scan.variants) if v.alpha == 1.0 and len(v.keys) == 1]
    if not full:
        raise UserError(f"scan {scan.name!r} has no full swaps (alpha 1) of single tensors: rescan with --alphas 1")
    for i in full:
        values = base[fg] - means[i, fg]
        if np.all(np.isfinite(values)):
            drops[scan.variants[i].keys[0]] = float(values.max())
    return drops


ACROSS = ("all", "mean")
RULE_OPTIONS = ("empty", "per")  # how a scan counted Dice, when not the defaults (one, subject)


def drops_across(scans: Sequence[Any], across: str) -> dict[str, float]:
    """Per state-dict key, the worst foreground Dice drop over several scans (recipient/donor pairs,
    e.g. seeds): `all` takes the largest (reusable only if it is in every pair), `mean` the mean. A
    key some scan has no value for gives no evidence."""
    if across not in ACROSS:
        raise UserError(f"unknown --across {across!r}: use all (reusable in every pair) or mean (on average)")
    per_scan = [scan_dice_drops(s) for s in scans]
    keys = set(per_scan[0]).intersection(*per_scan[1:]) if per_scan else set()
    pick = max if across == "all" else (lambda values: sum(values) / len(values))
    return {k: float(pick([d[k] for d in per_scan])) for k in per_scan[0] if k in keys}


def infer_plan(
    scan: Any = None,
    rmse: Mapping[str, float] | None = None,
    max_dice_drop: float | None = 0.05,
    max_rmse: float | None = None,
    *,
    layers: LayerIndex | Iterable[Layer] | None = None,
    combine: str = "and",
    name: str = "",
    arch: str = "",
    provenance: Mapping[str, Any] | None = None,
    across: str = "all",
) -> ReusePlan:
    """Decide which tensors are reusable from a scan and/or per-tensor RMSE.

    scan: a ScanResult (engine/swaps/scan.py), or a list of them (one per recipient/donor pair,
    combined by `across`, see `drops_across`); reusable when swapping the donor's tensor in costs at
    most `max_dice_drop` Dice on every present foreground class. rmse: state-dict key -> RMSE
    between recipient and donor; reusable when at most `max_rmse`. With both criteria, `combine`
    "and" needs both to hold, "or" either. A tensor with no evidence for a criterion in use fails
    that criterion. `layers` (the recipient's layer index) gives the universe and element counts;
    without it the universe is the tensors the evidence names, with unknown sizes.
    """
    if combine not in COMBINE:
        raise UserError(f"unknown combine {combine!r}: use and or or")
    dice_limit = max_dice_drop if scan is not None else None  # the criteria in use
    rmse_limit = max_rmse if rmse is not None else None
    if dice_limit is None and rmse_limit is None:
        raise UserError("a plan needs evidence: a scan with --max-dice-drop and/or a comparison with --max-rmse")
    for label, value in (("--max-dice-drop", max_dice_drop), ("--max-rmse", max_rmse)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UserError(f"{label} must be a number >= 0 (got {value})")
    scans = list(scan) if isinstance(scan, (list, tuple)) else ([] if scan is None else [scan])
    scan = scans[0] if scans else None
    rules = [{k: v for k, v in getattr(s, "options", {}).items() if k in RULE_OPTIONS} for s in scans]
    if any(r != rules[0] for r in rules):
        raise UserError("the scans count Dice differently (--empty, --per): give scans made with the same rule")
    drops = drops_across(scans, across) if scans else {}
    errors = dict(rmse or {})
    if layers is not None:
        tensors = universe(layers)
    else:
        scanned = [v.keys[0] for v in scan.variants if v.alpha == 1.0 and len(v.keys) == 1] if scan is not None else []
        keys = list(dict.fromkeys([*scanned, *errors]))
        tensors = [_bare_tensor(k, scan) for k in keys]
    out: list[PlanTensor] = []
    for t in tensors:
        drop, err = drops.get(t.key), errors.get(t.key)
        checks = []
        if dice_limit is not None:
            checks.append(drop is not None and drop <= dice_limit + TOLERANCE)
        if rmse_limit is not None:
            checks.append(err is not None and math.isfinite(err) and err <= rmse_limit + TOLERANCE)
        ok = all(checks) if combine == "and" else any(checks)
        out.append(replace(t, reusable=bool(ok), dice_drop=drop, rmse=err))
    criteria = {
        "max_dice_drop": dice_limit,
        "max_rmse": rmse_limit,
        "combine": combine,
    }
    prov: dict[str, Any] = {"source": "inferred"}
    if scan is not None:
        prov.update(scan=scan.name, recipient=scan.recipient, donor=scan.donor, data=scan.data, **rules[0])
    if len(scans) > 1:
        prov.update(scans=[s.name for s in scans], across=across)
        criteria["across"] = across
    prov.update(dict(provenance or {}))
    return ReusePlan(name=name, arch=arch, tensors=out, criteria=criteria, provenance=prov)


def _bare_tensor(key: str, scan: Any) -> PlanTensor:
    """A universe entry known only by its key (and the scan variant naming it, if any)."""
    if scan is not None:
        for v in scan.variants:
            if v.keys == (key,):
                return PlanTensor(v.layer, v.index, v.kind, key, 0, False)
    return PlanTensor(key.rpartition(".")[0], None, key.rpartition(".")[2], key, 0, False)


# -- the lab file -------------------------------------------------------------------------------


def write_plan(path: Path, plan: ReusePlan) -> Path:
    """Write plans/<name>.h5 atomically: one row per tensor in parallel datasets under /tensors."""
    with atomic_h5(path) as f:
        stamp(f, KIND, {"plan": plan.name, **plan.provenance})
        f.attrs["name"] = plan.name
        f.attrs["arch"] = plan.arch
        set_json(f, "criteria", plan.criteria)
        set_json(f, "plan_provenance", plan.provenance)
        set_json(f, "summary", {"kind": KIND, **plan.summary()})
        g = f.create_group("tensors")
        t = plan.tensors
        write_strings(g, "layer", [x.layer for x in t])
        g.create_dataset("index", data=np.array([x.index if x.index is not None else -1 for x in t], dtype="<i4"))
        write_strings(g, "kind", [x.kind for x in t])
        write_strings(g, "key", [x.key for x in t])
        g.create_dataset("numel", data=np.array([x.numel for x in t], dtype="<i8"))
        g.create_dataset("reusable", data=np.array([x.reusable for x in t], dtype=bool))
        g.create_dataset("dice_drop", data=_nan_array([x.dice_drop for x in t]))
        g.create_dataset("rmse", data=_nan_array([x.rmse for x in t]))
    return path


def _nan_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype="<f8")


def read_plan(path: Path) -> ReusePlan:
    """Read a plan file written by `write_plan`."""
    with open_h5(path) as f:
        if attr_str(f, "kind") != KIND:
            raise UserError(f"{path} is not a reuse plan (kind {attr_str(f, 'kind') or 'missing'!r})")
        g = f["tensors"]
        layer, kind, key = read_strings(g["layer"]), read_strings(g["kind"]), read_strings(g["key"])
        index, numel, reusable = g["index"][()], g["numel"][()], g["reusable"][()]
        drop, err = g["dice_drop"][()], g["rmse"][()]
        tensors = [
            PlanTensor(
                layer[i],
                int(index[i]) if index[i] >= 0 else None,
                kind[i],
                key[i],
                int(numel[i]),
                bool(reusable[i]),
                finite_or_none(drop[i]),
                finite_or_none(err[i]),
            )
            for i in range(len(layer))
        ]
        return ReusePlan(
            name=attr_str(f, "name") or path.stem,
            arch=attr_str(f, "arch"),
            tensors=tensors,
            criteria=get_json(f, "criteria", {}) or {},
            provenance=get_json(f, "plan_provenance", {}) or {},
        )


def save_plan(lab: Lab, plan: ReusePlan, *, overwrite: bool = False) -> Path:
    """Store `plan` as plans/<plan.name>.h5 (refuses to replace one unless `overwrite`)."""
    path = lab.path("plans", plan.name) if overwrite else lab.ensure_new("plans", plan.name)
    return write_plan(path, plan)


def load_plan(lab: Lab, ref: str) -> ReusePlan:
    """A plan by id (`name` or `plans/name`) or a path to a plan .h5 file."""
    path = Path(ref).expanduser()
    if not (ref.endswith(".h5") and path.is_file()):
        path = lab.resolve(ref.removeprefix("plans/"), "plans").path
    return read_plan(path)
