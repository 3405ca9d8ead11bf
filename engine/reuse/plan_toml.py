"""Reuse plans as TOML, so a researcher can read one, hand-tune it and import it again.

The file names the non-reusable tensors per kind, the way the paper writes them, above the plan's
universe (every layer with its tensors' element counts and the evidence of the inference), which
stays one line per layer. Written with tomli-w (scalars) and read back with tomllib; the round
trip keeps the universe, the decision, the criteria and the evidence exactly.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import tomli_w
import tomllib

from reuse_console.engine.models.layers import BN_KINDS, KINDS, Layer
from reuse_console.engine.reuse.plans import PlanTensor, ReusePlan, format_not_reusable
from reuse_console.store.errors import UserError

FORMAT = "reuse-plan/1"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

HEADER = """\
# Reuse plan {name!r}, exported by reuse-console.
#
# A model trained with `reuse-console train ... --init DONOR --plan PLAN` takes every tensor of
# [universe] (below) from the donor, except those named in [not_reusable]: per kind (RM RV RW RB:
# BatchNorm running mean, running variance, weight, bias; W B: conv weight, bias) the layers, by
# number or by name such as "head", that keep their fresh initialisation instead.
#
# Edit [not_reusable], then store the result as a new plan:
#     reuse-console plan import THIS_FILE.toml --name NEW_NAME
#
# As exported: {reused} of {total} tensors reused ({share}), {elements} of parameter elements.
# Not reusable: {not_reusable}
"""

LAYERS_NOTE = """\
# The plan's universe: every layer, its modules and the element count of each tensor. Evidence
# (not edited by hand; changing it changes nothing): dice_drop = worst foreground Dice drop when
# the donor's tensor was swapped in (scan); rmse = RMSE between recipient and donor.
"""


def _scalar(value: Any) -> str:
    """One TOML scalar, formatted by tomli-w."""
    return tomli_w.dumps({"v": value})[len("v = ") : -1]


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _scalar(name)


def _inline(value: Any) -> str:
    """A value on one line: lists as [a, b], dicts as inline tables."""
    if isinstance(value, dict):
        items = ", ".join(f"{_key(str(k))} = {_inline(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return _scalar(value)


def _drop_none(value: Any) -> Any:
    """TOML has no null: drop None (and non-finite floats) from nested data."""
    if isinstance(value, dict):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None and not _nonfinite(v)}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value if v is not None]
    return value


def _nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _layer_label(t: PlanTensor) -> int | str:
    return t.index if t.index is not None and t.layer == str(t.index) else t.layer


def plan_to_toml(plan: ReusePlan) -> str:
    """The plan as a commented, hand-editable TOML document."""
    lines = [
        HEADER.format(
            name=plan.name,
            reused=sum(t.reusable for t in plan.tensors),
            total=len(plan.tensors),
            share=_percent(plan.tensor_share()),
            elements=_percent(plan.element_share()),
            not_reusable=format_not_reusable(plan) or "(none)",
        ),
        f"format = {_scalar(FORMAT)}",
        f"name = {_scalar(plan.name)}",
        f"arch = {_scalar(plan.arch)}",
        "",
        "[not_reusable]",
    ]
    for kind in KINDS:
        if any(t.kind == kind for t in plan.tensors):
            lines.append(
                f"{kind} = {_inline([_layer_label(t) for t in plan.tensors if t.kind == kind and not t.reusable])}"
            )
    for table, data in (("criteria", plan.criteria), ("provenance", plan.provenance)):
        clean = _drop_none(data)
        lines += ["", f"[{table}]"] if clean else []
        if clean:
            lines.append(tomli_w.dumps(clean).rstrip("\n"))
    lines += ["", LAYERS_NOTE.rstrip("\n"), "[universe]", "layers = ["]
    for layer in _layers(plan):
        lines.append(f"    {_inline(layer)},")
    lines.append("]")
    return "\n".join(lines) + "\n"


def _percent(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{100 * value:.1f}%"


def _layers(plan: ReusePlan) -> list[dict[str, Any]]:
    """Group the plan's tensors by layer: name, index, modules, numel and evidence per kind."""
    out: dict[str, dict[str, Any]] = {}
    for t in plan.tensors:
        module, _, _ = t.key.rpartition(".")
        entry = out.setdefault(
            t.layer,
            {"name": t.layer, "index": t.index, "conv": None, "bn": None, "numel": {}, "dice_drop": {}, "rmse": {}},
        )
        entry["bn" if t.kind in BN_KINDS else "conv"] = module
        entry["numel"][t.kind] = t.numel
        if t.dice_drop is not None:
            entry["dice_drop"][t.kind] = t.dice_drop
        if t.rmse is not None:
            entry["rmse"][t.kind] = t.rmse
    return [{k: v for k, v in e.items() if v not in (None, {})} for e in out.values()]


def export_plan_toml(plan: ReusePlan, out: Path, *, overwrite: bool = False) -> Path:
    """Write the plan's TOML to `out` (refuses to replace a file unless `overwrite`)."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise UserError(f"--out {out} is a folder: give a file name such as {out / (plan.name + '.toml')}")
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (remove it or choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(plan_to_toml(plan), encoding="utf-8")
    return out


def plan_from_toml(text: str, *, name: str | None = None, source: str = "") -> ReusePlan:
    """Parse a plan TOML document (as `plan_to_toml` writes it, possibly hand-edited)."""
    where = source or "plan TOML"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where} is not valid TOML: {exc}") from exc
    if doc.get("format") != FORMAT:
        raise UserError(f"{where} is not a reuse plan (format {doc.get('format')!r}, expected {FORMAT!r})")
    tensors = _universe(doc.get("universe", {}).get("layers"), where)
    by_label = {(t.layer, t.kind): t for t in tensors}
    excluded = _not_reusable(doc.get("not_reusable", {}), by_label, where)
    tensors = [
        PlanTensor(t.layer, t.index, t.kind, t.key, t.numel, (t.layer, t.kind) not in excluded, t.dice_drop, t.rmse)
        for t in tensors
    ]
    criteria = dict(doc.get("criteria", {}))
    for key in ("max_dice_drop", "max_rmse"):
        criteria.setdefault(key, None)
    plan_name = name or str(doc.get("name", ""))
    return ReusePlan(
        name=plan_name,
        arch=str(doc.get("arch", "")),
        tensors=tensors,
        criteria=criteria,
        provenance=dict(doc.get("provenance", {})),
    )


def _universe(layers: Any, where: str) -> list[PlanTensor]:
    if not isinstance(layers, list) or not layers:
        raise UserError(f"{where} has no [universe] layers list: export a plan to see the expected shape")
    out: list[PlanTensor] = []
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("numel"), dict):
            raise UserError(f"{where}: layers[{i}] needs at least name and numel")
        numel = entry["numel"]
        bad = [k for k in numel if k not in KINDS]
        if bad:
            raise UserError(f"{where}: layer {entry['name']} has unknown kind {bad[0]!r} (kinds: {' '.join(KINDS)})")
        kinds = tuple(k for k in KINDS if k in numel)
        index = entry.get("index")
        layer = Layer(
            int(index) if index is not None else None, str(entry["name"]), entry.get("conv"), entry.get("bn"), kinds
        )
        drops, errors = entry.get("dice_drop", {}), entry.get("rmse", {})
        for kind in kinds:
            module = "bn" if kind in BN_KINDS else "conv"
            if not entry.get(module):
                raise UserError(f"{where}: layer {layer.name} has kind {kind} but no `{module}` module path")
            key = layer.key(kind)
            out.append(
                PlanTensor(
                    layer.name,
                    layer.index,
                    kind,
                    key,
                    int(numel[kind]),
                    False,
                    _float(drops.get(kind)),
                    _float(errors.get(kind)),
                )
            )
    return out


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _not_reusable(table: Any, by_label: dict[tuple[str, str], PlanTensor], where: str) -> set[tuple[str, str]]:
    if not isinstance(table, dict):
        raise UserError(f"{where}: [not_reusable] must be a table of kind = [layers]")
    out: set[tuple[str, str]] = set()
    for kind, layers in table.items():
        kind_up = str(kind).upper()
        if kind_up not in KINDS:
            raise UserError(f"{where}: [not_reusable] has unknown kind {kind!r} (kinds: {' '.join(KINDS)})")
        if not isinstance(layers, list):
            raise UserError(f'{where}: [not_reusable] {kind} must be a list such as [1, 17, "head"]')
        for layer in layers:
            label = str(layer).strip()
            if (label, kind_up) not in by_label:
                raise UserError(
                    f"{where}: [not_reusable] {kind} names layer {label!r}, which has no {kind_up} in this plan"
                )
            out.add((label, kind_up))
    return out


def import_plan_toml(path: Path, *, name: str | None = None) -> ReusePlan:
    """Read a plan TOML file; the plan is named `name` (default: the file's `name`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"plan file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}): save the plan TOML as UTF-8") from exc
    plan = plan_from_toml(text, name=name, source=str(path))
    if not plan.name:
        raise UserError(f"{path} names no plan: pass --name")
    plan.provenance = {**plan.provenance, "source": "imported", "file": str(path)}
    return plan
