"""Reuse plans from lab objects: a scan and/or an RMSE comparison in, plans/<name>.h5 out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reuse_console.engine.compare.rmse import read_comparison
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config
from reuse_console.engine.reuse.plans import ReusePlan, infer_plan, save_plan
from reuse_console.engine.swaps.scan_store import load_scan
from reuse_console.store.checkpoints import read_meta
from reuse_console.store.errors import NotFound, UserError
from reuse_console.store.lab import Lab


def recipient_layers(lab: Lab, ref: str) -> tuple[LayerIndex, str] | None:
    """The layer index and arch of checkpoint `ref`, or None when it is no longer in the lab."""
    try:
        meta = read_meta(checkpoint_path(lab, ref))
    except NotFound:
        return None
    model = build_model(meta.arch, rebuild_config(meta.arch_config), trusted=False)
    return LayerIndex.from_model(model, model_in_channels(meta.arch_config)), meta.arch


def comparison_rmse(comp: Any, layers: LayerIndex, *, models: tuple[str, str] | None = None) -> dict[str, float]:
    """State-dict key -> RMSE for one pair of a comparison: the pair of `models` (in either order),
    or its only pair."""
    if models is not None:
        wanted = set(models)
        pairs = [p for p, (a, b) in enumerate(comp.pairs) if {comp.models[a], comp.models[b]} == wanted]
        if not pairs:
            raise UserError(
                f"comparison {comp.name!r} does not compare {models[0]} with {models[1]} "
                f"(it has {', '.join(comp.models)})"
            )
        p = pairs[0]
    elif len(comp.pairs) == 1:
        p = 0
    else:
        raise UserError(
            f"comparison {comp.name!r} has {len(comp.pairs)} pairs: give a --scan too, so its recipient "
            "and donor pick the pair"
        )
    out: dict[str, float] = {}
    for li, name in enumerate(comp.layers):
        layer = layers.get(name)
        for ki, kind in enumerate(comp.kinds):
            value = float(comp.rmse[p, li, ki])
            if np.isfinite(value) and kind in layer.kinds:
                out[layer.key(kind)] = value
    return out


def _check_pairs_match(results: Sequence[Any]) -> None:
    """Scans combined into one plan must swap the same tensors (one architecture, one layer index)."""
    if len(results) < 2:
        return
    first = [v.id for v in results[0].variants]
    for other in results[1:]:
        if [v.id for v in other.variants] != first:
            raise UserError(
                f"scans {results[0].name!r} and {other.name!r} swap other tensors: combine scans of one "
                "architecture with the same --layers, --kinds and --alphas"
            )


def plan_from_lab(
    lab: Lab,
    *,
    scan: str | Sequence[str] | None = None,
    rmse: str | None = None,
    max_dice_drop: float | None = 0.05,
    max_rmse: float | None = None,
    combine: str = "and",
    name: str | None = None,
    across: str = "all",
) -> ReusePlan:
    """Infer a plan from stored evidence and store it; returns the plan (`plan.name` is its id).

    Several scans (one per recipient/donor pair, e.g. seeds) are combined by `across`: a tensor is
    reusable when it is in every pair (`all`) or on average (`mean`)."""
    ids = [scan] if isinstance(scan, str) else list(scan or [])
    scan = ids[0] if ids else None
    if scan is None and rmse is None:
        raise UserError("give --scan SCAN and/or --rmse COMPARISON as evidence")
    if rmse is not None and max_rmse is None:
        raise UserError("--rmse needs --max-rmse (tensors with RMSE up to it count as reusable)")
    results = [load_scan(lab, s) for s in ids]
    result = results[0] if results else None
    _check_pairs_match(results)
    comp = None
    if rmse is not None:
        entry = lab.resolve(rmse.removeprefix("comparisons/"), "comparisons")
        comp = read_comparison(entry.path, entry.id)
    if result is not None:
        recipient = result.recipient
    else:
        assert comp is not None  # a scan or a comparison was given (checked above)
        recipient = comp.models[0]
    found = recipient_layers(lab, recipient)
    index, arch = found if found is not None else (None, "")
    errors = None
    if comp is not None:
        if index is None:
            raise UserError(
                f"checkpoint {recipient!r} is no longer in the lab: its layers are needed to read the comparison"
            )
        pair = (result.recipient, result.donor) if result is not None else None
        errors = comparison_rmse(comp, index, models=pair)
    base = f"plan-{scan or rmse}"
    plan = infer_plan(
        results if len(results) > 1 else result,
        errors,
        max_dice_drop if result is not None else None,
        max_rmse,
        layers=index,
        combine=combine,
        name=name or base[:100],
        arch=arch,
        provenance={"comparison": comp.name} if comp is not None else None,
        across=across,
    )
    if comp is not None and result is None:
        plan.provenance.update(recipient=comp.models[0], donor=comp.models[1] if len(comp.models) > 1 else "")
    if name is None:  # chosen (and claimed) only once the plan could be inferred
        plan.name = lab.unique_name("plans", base[:100])
    save_plan(lab, plan)
    return plan
