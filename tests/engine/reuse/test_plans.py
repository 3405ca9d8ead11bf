"""Reuse plans: inference from a hand-built scan, shares by hand, lab and TOML round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reuse_console.engine.models.layers import Layer
from reuse_console.engine.reuse.plan_toml import export_plan_toml, import_plan_toml, plan_from_toml, plan_to_toml
from reuse_console.engine.reuse.plans import (
    ReusePlan,
    format_not_reusable,
    infer_plan,
    load_plan,
    read_plan,
    save_plan,
    universe,
)
from reuse_console.engine.swaps.variants import ScanResult, Variant
from reuse_console.store.errors import UserError

BN = ("RM", "RV", "RW", "RB")


def _layer(index: int | None, name: str, conv: str, bn: str | None, numel: dict[str, int]) -> Layer:
    kinds = tuple(k for k in ("RM", "RV", "RW", "RB", "W", "B") if k in numel)
    return Layer(index, name, conv, bn, kinds, {k: (n,) for k, n in numel.items()}, numel)


LAYERS = [
    _layer(1, "1", "c1", "b1", {"RM": 4, "RV": 4, "RW": 4, "RB": 4, "W": 36, "B": 4}),
    _layer(2, "2", "c2", "b2", {"RM": 8, "RV": 8, "RW": 8, "RB": 8, "W": 288, "B": 8}),
    _layer(None, "head", "hd", None, {"W": 12, "B": 3}),
]
CLASSES = ["background", "RV", "MYO", "LV"]
BASE = np.array([[0.99, 0.80, 0.70, 0.90], [0.97, 0.60, 0.70, 0.80]])  # 2 subjects; means .98 .70 .70 .85


def _variant(layer: str, kind: str, alpha: float = 1.0) -> Variant:
    bn = kind in BN
    key = f"{'b' if bn else 'c'}{layer}.{ {'RM': 'running_mean', 'RV': 'running_var', 'RW': 'weight', 'RB': 'bias', 'W': 'weight', 'B': 'bias'}[kind] }"
    return Variant(layer, kind, alpha, (key,), int(layer), (key.rpartition(".")[0],))


def _scan(present: list[bool] | None = None) -> ScanResult:
    """Drops (baseline mean - swapped mean) per variant, chosen so the answer is known by hand."""
    drops = {  # per class: background, RV, MYO, LV
        ("1", "RM"): [0.00, 0.30, 0.10, 0.20],  # big drop: not reusable
        ("1", "RV"): [0.00, 0.05, 0.05, 0.05],  # exactly at the threshold: reusable
        ("1", "RW"): [0.50, 0.00, 0.00, 0.00],  # background only: not judged, reusable
        ("1", "RB"): [0.00, -0.10, 0.00, 0.00],  # Dice went up: reusable
        ("1", "W"): [0.00, 0.00, 0.06, 0.00],  # one class over: not reusable
        ("1", "B"): [0.00, 0.01, 0.02, 0.03],
        ("2", "RM"): [0.00, 0.00, 0.00, 0.40],  # LV only: not reusable unless LV is absent
        ("2", "RV"): [0.00, 0.02, 0.00, 0.00],
        ("2", "RW"): [0.00, 0.00, 0.00, 0.00],
        ("2", "RB"): [0.00, 0.00, 0.00, 0.00],
        ("2", "W"): [0.00, 0.20, 0.20, 0.20],
        # ("2", "B") evaluated but unfinished (NaN) below; head not scanned at all
    }
    variants = [_variant(layer, kind) for layer, kind in drops] + [_variant("2", "B"), _variant("1", "RM", 0.5)]
    dice = np.zeros((len(variants), 2, 4))
    for i, d in enumerate(drops.values()):
        dice[i] = BASE - np.asarray(d)  # same drop for both subjects, so the mean drop is d
    dice[len(drops)] = np.nan
    dice[len(drops) + 1] = BASE  # a half swap with no drop: must not count as evidence
    return ScanResult(
        name="s1",
        recipient="seg",
        donor="ae",
        data="acdc",
        classes=CLASSES,
        present=present or [True] * 4,
        subjects=["a", "b"],
        baseline=BASE,
        variants=variants,
        dice=dice,
    )


def test_plan_from_a_hand_built_scan() -> None:
    plan = infer_plan(_scan(), max_dice_drop=0.05, layers=LAYERS, name="p", arch="unet")
    not_reusable = {(t.layer, t.kind) for t in plan.not_reusable}
    expected = {("1", "RM"), ("1", "W"), ("2", "RM"), ("2", "W"), ("2", "B"), ("head", "W"), ("head", "B")}
    assert not_reusable == expected
    assert format_not_reusable(plan) == "RM: 1,2; W: 1,2,head; B: 2,head"
    assert plan.provenance["scan"] == "s1" and plan.provenance["donor"] == "ae"
    drop = {(t.layer, t.kind): t.dice_drop for t in plan.tensors}
    assert drop[("1", "RM")] == pytest.approx(0.30) and drop[("1", "RW")] == pytest.approx(0.0)
    assert drop[("2", "B")] is None and drop[("head", "W")] is None


def test_absent_classes_are_not_judged() -> None:
    plan = infer_plan(_scan(present=[True, True, True, False]), max_dice_drop=0.05, layers=LAYERS)
    assert ("2", "RM") in plan.reusable  # its only drop is on LV, which this data set does not label
    assert ("1", "RM") not in plan.reusable


def test_shares_by_hand() -> None:
    plan = infer_plan(_scan(), max_dice_drop=0.05, layers=LAYERS)
    # 14 tensors (6 + 6 + 2), 7 not reusable
    assert plan.tensor_share() == pytest.approx(7 / 14)
    # elements: layer 1 = 4*4+36+4 = 56, layer 2 = 8*4+288+8 = 328, head = 15; total 399
    # reused: layer 1 RV RW RB B = 4+4+4+4 = 16; layer 2 RV RW RB = 24 -> 40
    assert plan.element_share() == pytest.approx(40 / 399)
    summary = plan.summary()
    assert summary["reused"] == 7 and summary["tensors"] == 14


def test_rmse_criterion_and_combinations() -> None:
    rmse = {t.key: 0.01 for t in universe(LAYERS)}
    rmse["c1.weight"] = 0.5  # conv W of layer 1 far from the donor's
    rmse["hd.bias"] = math.nan
    only = infer_plan(None, rmse, max_dice_drop=None, max_rmse=0.1, layers=LAYERS)
    assert {(t.layer, t.kind) for t in only.not_reusable} == {("1", "W"), ("head", "B")}
    both = infer_plan(_scan(), rmse, max_dice_drop=0.05, max_rmse=0.1, layers=LAYERS, combine="and")
    assert format_not_reusable(both) == "RM: 1,2; W: 1,2,head; B: 2,head"
    either = infer_plan(_scan(), rmse, max_dice_drop=0.05, max_rmse=0.1, layers=LAYERS, combine="or")
    # reusable unless both fail: 1 W fails both; 2 RM/W pass RMSE; head B fails both (NaN, unscanned)
    assert format_not_reusable(either) == "W: 1; B: head"
    assert both.criteria == {"max_dice_drop": 0.05, "max_rmse": 0.1, "combine": "and"}


def test_bad_inference_inputs() -> None:
    with pytest.raises(UserError, match="evidence"):
        infer_plan(None, None, layers=LAYERS)
    with pytest.raises(UserError, match=">= 0"):
        infer_plan(_scan(), max_dice_drop=-0.1, layers=LAYERS)
    with pytest.raises(UserError, match="combine"):
        infer_plan(_scan(), layers=LAYERS, combine="xor")
    scan = _scan()
    scan.present = [True, False, False, False]
    with pytest.raises(UserError, match="foreground"):
        infer_plan(scan, layers=LAYERS)


def test_universe_defaults_to_the_scanned_tensors() -> None:
    plan = infer_plan(_scan(), max_dice_drop=0.05)
    assert len(plan.tensors) == 12  # layer 1 and 2, every kind; no head
    assert format_not_reusable(plan) == "RM: 1,2; W: 1,2; B: 2"
    assert math.isnan(plan.element_share())  # sizes unknown without a layer index


def test_lab_round_trip_is_exact(lab) -> None:
    rmse = {t.key: 0.1 * i for i, t in enumerate(universe(LAYERS))}
    plan = infer_plan(_scan(), rmse, max_dice_drop=0.05, max_rmse=0.35, layers=LAYERS, name="p1", arch="unet")
    path = save_plan(lab, plan)
    assert path == lab.path("plans", "p1")
    back = read_plan(path)
    assert back.tensors == plan.tensors and back.criteria == plan.criteria and back.arch == "unet"
    assert load_plan(lab, "p1").reusable == plan.reusable
    assert lab.entries("plans")[0].summary["not_reusable"] == format_not_reusable(plan)
    with pytest.raises(UserError, match="already exists"):
        save_plan(lab, plan)
    assert [p.name for p in lab.folder("plans").iterdir()] == ["p1.h5"]  # no temp files left


def test_toml_round_trip_and_hand_edit(tmp_path) -> None:
    plan = infer_plan(_scan(), max_dice_drop=0.05, layers=LAYERS, name="p1", arch="unet")
    text = plan_to_toml(plan)
    assert '[not_reusable]\nRM = [1, 2]\nRV = []\nRW = []\nRB = []\nW = [1, 2, "head"]\nB = [2, "head"]\n' in text
    back = plan_from_toml(text)
    assert back.tensors == plan.tensors and back.name == "p1" and back.arch == "unet"
    assert back.criteria == plan.criteria

    # a researcher decides layer 1 W is fine after all and the head's bias too, and RV 2 is not
    edited = text.replace('W = [1, 2, "head"]', 'W = [2, "head"]').replace('B = [2, "head"]', "B = [2]")
    edited = edited.replace("RV = []", 'RV = ["2"]')
    out = tmp_path / "p.toml"
    out.write_text(edited)
    hand = import_plan_toml(out, name="p2")
    assert hand.name == "p2" and hand.provenance["source"] == "imported"
    assert format_not_reusable(hand) == "RM: 1,2; RV: 2; W: 2,head; B: 2"
    assert hand.with_reusable(plan.reusable).tensors == plan.tensors

    with pytest.raises(UserError, match="already exists"):
        export_plan_toml(plan, out)
    bad = text.replace('W = [1, 2, "head"]', "W = [1, 7]")
    with pytest.raises(UserError, match="layer '7'"):
        plan_from_toml(bad)
    with pytest.raises(UserError, match="unknown kind"):
        plan_from_toml(text.replace("RV = []", "XX = []"))
    with pytest.raises(UserError, match="not valid TOML"):
        plan_from_toml(text + "\n[[[")
    with pytest.raises(UserError, match="not a reuse plan"):
        plan_from_toml('format = "other"')


def test_with_reusable_refuses_unknown_tensors() -> None:
    plan = ReusePlan(name="u", arch="unet", tensors=universe(LAYERS))
    assert plan.tensor_share() == 0.0
    with pytest.raises(UserError, match="no tensor W of layer 9"):
        plan.with_reusable({("9", "W")})
