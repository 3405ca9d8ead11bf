"""Property-based tests of what users type: layer and kind selections, swap specs, alphas, study files.

Valid input must select exactly what an independent reading of the syntax says (a range "a-b" is
layers a..b, a comma list is the union of its items, kind groups expand to their kinds), and any
text at all must either parse or raise a UserError: never a ValueError, KeyError or TypeError
that the CLI would show as a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reuse_console.engine.grids.study import MAX_SEEDS, Study, load_study
from reuse_console.engine.models.layers import BN_KINDS, CONV_KINDS, KINDS, LayerIndex
from reuse_console.engine.swaps.swap import SwapSpec, parse_alphas
from reuse_console.store.errors import UserError

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _unet_index() -> LayerIndex:
    from reuse_console.engine.models.registry import build_model, default_config

    return LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, base_width=4)), 1, 32)


INDEX = _unet_index()
N = len(INDEX.numbered)  # 18
NAMES = [layer.name for layer in INDEX.layers if layer.index is None]  # up1..up4, head
POSITION = {layer.name: i for i, layer in enumerate(INDEX.layers)}


def test_index_is_the_unet_the_properties_assume() -> None:
    assert N == 18 and NAMES == ["up1", "up2", "up3", "up4", "head"]


# -- layer selections ------------------------------------------------------------------------------

pad = st.sampled_from(["", " ", "  "])
number = st.integers(1, N)
item = st.one_of(
    number.map(lambda i: (str(i), {str(i)})),
    st.tuples(number, number, pad, pad).map(
        lambda t: (f"{min(t[:2])}{t[2]}-{t[3]}{max(t[:2])}", {str(i) for i in range(min(t[:2]), max(t[:2]) + 1)})
    ),
    st.sampled_from(NAMES).map(lambda name: (name, {name})),
    st.sampled_from(INDEX.layers).map(lambda layer: (layer.conv, {layer.name})),  # a module path
)


@SETTINGS
@given(st.lists(st.tuples(item, pad, pad), min_size=1, max_size=6))
def test_select_is_the_union_of_items(items: list) -> None:
    spec = ",".join(f"{a}{text}{b}" for (text, _), a, b in items)
    expected = set().union(*(names for (_, names), _, _ in items))
    chosen = INDEX.select(spec)
    assert [layer.name for layer in chosen] == sorted(expected, key=POSITION.__getitem__)


@SETTINGS
@given(st.integers(-5, N + 5), st.integers(-5, N + 5))
def test_ranges_outside_or_reversed_are_refused(lo: int, hi: int) -> None:
    spec = f"{lo}-{hi}"
    if 1 <= lo <= hi <= N:
        assert [layer.index for layer in INDEX.select(spec)] == list(range(lo, hi + 1))
    else:
        with pytest.raises(UserError):
            INDEX.select(spec)


@SETTINGS
@given(st.text(max_size=30))
def test_any_layer_text_parses_or_is_a_user_error(text: str) -> None:
    try:
        chosen = INDEX.select(text)
    except UserError:
        return
    assert chosen and all(layer in INDEX.layers for layer in chosen)


@SETTINGS
@given(st.text(alphabet="0123456789-, xhead", max_size=20))
def test_layer_syntax_characters_parse_or_are_a_user_error(text: str) -> None:
    try:
        INDEX.select(text)
    except UserError:
        pass


# -- kinds -----------------------------------------------------------------------------------------

GROUPS = {"all": set(KINDS), "bn": set(BN_KINDS), "conv": set(CONV_KINDS), **{k: {k} for k in KINDS}}
case = st.sampled_from([str.lower, str.upper, str.title])


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(sorted(GROUPS)), case, pad), min_size=1, max_size=5))
def test_kinds_are_the_union_of_groups_in_canonical_order(parts: list) -> None:
    spec = ",".join(f"{p}{c(name)}{p}" for name, c, p in parts)
    expected = set().union(*(GROUPS[name] for name, _, _ in parts))
    assert LayerIndex.parse_kinds(spec) == tuple(k for k in KINDS if k in expected)


@SETTINGS
@given(st.text(max_size=20))
def test_any_kind_text_parses_or_is_a_user_error(text: str) -> None:
    try:
        kinds = LayerIndex.parse_kinds(text)
    except UserError:
        return
    assert kinds and set(kinds) <= set(KINDS)


# -- swap specs and alphas -------------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(item, min_size=1, max_size=4),
    st.lists(st.sampled_from(sorted(GROUPS)), min_size=1, max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_swap_spec_targets_every_chosen_tensor(items: list, kinds: list, alpha: float) -> None:
    layers = ",".join(text for text, _ in items)
    names = set().union(*(n for _, n in items))
    wanted = set().union(*(GROUPS[k] for k in kinds))
    expected = [
        (layer.name, k)
        for layer in INDEX.layers
        if layer.name in names
        for k in KINDS
        if k in wanted and k in layer.kinds
    ]
    if not expected or not (math.isfinite(alpha) and 0 <= alpha <= 1):
        with pytest.raises(UserError):
            SwapSpec.parse("r", "d", INDEX, layers, ",".join(kinds), alpha)
        return
    spec = SwapSpec.parse("r", "d", INDEX, layers, ",".join(kinds), alpha)
    assert list(spec.targets) == expected and spec.alpha == alpha
    assert len(spec.keys(INDEX)) == len(set(spec.keys(INDEX))) == len(expected)


@SETTINGS
@given(st.lists(st.floats(0, 1), min_size=1, max_size=6), pad)
def test_alphas_round_trip_unique_in_order(values: list[float], p: str) -> None:
    spec = ",".join(f"{p}{v!r}{p}" for v in values)
    assert parse_alphas(spec) == tuple(dict.fromkeys(values))


@SETTINGS
@given(st.text(max_size=20))
def test_any_alpha_text_parses_or_is_a_user_error(text: str) -> None:
    try:
        values = parse_alphas(text)
    except UserError:
        return
    assert values and all(0 <= v <= 1 for v in values)


# -- study files -----------------------------------------------------------------------------------

ids = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@st.composite
def studies(draw: st.DrawFn) -> tuple[dict, dict]:
    """A valid study as TOML data, and what it means (computed here, not by the parser)."""
    names = draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    sources, meant_sources = [], []
    for name in names:
        if draw(st.booleans()):
            sources.append({"name": name})
            meant_sources.append((name, None, None))
        else:
            donor, plan = draw(ids), draw(ids)
            sources.append({"name": name, "donor": donor, "plan": plan})
            meant_sources.append((name, donor, plan))
    data: dict = {"name": draw(ids), "target": draw(ids), "sources": sources}
    meant = {"modes": ["freeze", "finetune"], "subjects": [None], "seeds": [0, 1, 2], "epochs": 10}
    if draw(st.booleans()):
        data["modes"] = meant["modes"] = draw(
            st.lists(st.sampled_from(["freeze", "finetune"]), min_size=1, max_size=2, unique=True)
        )
    if draw(st.booleans()):
        subjects = draw(st.lists(st.one_of(st.integers(1, 100), st.just("all")), min_size=1, max_size=4, unique=True))
        data["subjects"] = subjects
        meant["subjects"] = [None if s == "all" else s for s in subjects]
    if draw(st.booleans()):
        seeds = draw(st.one_of(st.integers(1, 5), st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True)))
        data["seeds"] = seeds
        meant["seeds"] = list(range(seeds)) if isinstance(seeds, int) else seeds
    if draw(st.booleans()):
        data["train"] = {"epochs": draw(st.integers(1, 50)), "arch_config": {"base_width": 4}}
        meant["epochs"] = data["train"]["epochs"]
    meant["sources"] = meant_sources
    return data, meant


@SETTINGS
@given(studies())
def test_valid_study_means_what_it_says(pair: tuple[dict, dict]) -> None:
    data, meant = pair
    study = Study.from_dict(data)
    assert (study.name, study.target) == (data["name"], data["target"])
    assert [(s.name, s.donor, s.plan) for s in study.sources] == meant["sources"]
    assert study.modes == meant["modes"] and study.subjects == meant["subjects"] and study.seeds == meant["seeds"]
    assert study.train.epochs == meant["epochs"]
    n_random = sum(s.random for s in study.sources)
    per_seed = n_random + (len(study.sources) - n_random) * len(study.modes)
    assert len(study.cells()) == len(study.subjects) * per_seed * len(study.seeds)
    assert len({c.name for c in study.cells()}) == len(study.cells())


toml_scalar = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.booleans(), st.text(max_size=8))
toml_value = st.recursive(
    toml_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
FIELDS = ["name", "target", "sources", "modes", "subjects", "seeds", "train", "reference", "evaluate", "other"]


@SETTINGS
@given(
    studies(),
    st.lists(st.tuples(st.sampled_from(FIELDS), toml_value), min_size=1, max_size=3),
    st.sampled_from(["", "train", "sources"]),
)
def test_mangled_study_parses_or_is_a_user_error(pair: tuple[dict, dict], changes: list, where: str) -> None:
    data = pair[0]
    for key, value in changes:
        if where == "train":
            data.setdefault("train", {})[
                {
                    "name": "epochs",
                    "target": "lr",
                    "modes": "size",
                    "other": "augment",
                    "reference": "arch",
                    "evaluate": "arch_config",
                }.get(key, key)
            ] = value
        elif where == "sources":
            data["sources"][0][{"target": "donor", "modes": "plan"}.get(key, key)] = value
        else:
            data[key] = value
    try:
        Study.from_dict(data)
    except UserError:
        pass


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), toml_value, max_size=6))
def test_any_toml_document_is_a_study_or_a_user_error(tmp_path_factory: pytest.TempPathFactory, doc: dict) -> None:
    path = tmp_path_factory.getbasetemp() / "any.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    try:
        load_study(path)
    except UserError:
        pass


@SETTINGS
@given(st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode)))
def test_any_file_content_is_a_study_or_a_user_error(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "raw.toml"
    path.write_bytes(raw)
    try:
        load_study(path)
    except UserError:
        pass


@pytest.mark.parametrize("seeds", [0, MAX_SEEDS + 1, 2**63 - 1, -(2**63)])
def test_seed_counts_out_of_range_are_refused_without_building_them(seeds: int) -> None:
    with pytest.raises(UserError, match="seeds"):
        Study.from_dict({"target": "t", "sources": [{"name": "random"}], "seeds": seeds})


def test_missing_study_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_study(tmp_path / "nowhere.toml")
