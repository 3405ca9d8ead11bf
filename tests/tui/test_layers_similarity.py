"""Layers screen, compare-with: raw RMSE, RMSE after alignment and CKA per layer side by side, each
equal to what `align` and `cka` store for the same pair."""

from __future__ import annotations

import pytest
from swap_lab import make_checkpoint, make_lab
from test_app import make_app, run_async, wait_until

from reuse_console.engine.compare.align import run_align
from reuse_console.engine.compare.cka_lab import run_cka
from reuse_console.tui.screens.layers import LayersScreen


@run_async
async def test_compare_with_shows_aligned_rmse_and_cka(lab) -> None:
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=5)
    stored = run_align(lab, "seg2", "seg", data="toy", name="al", device="cpu").to_json()["rmse"]
    sim = run_cka(lab, ["seg", "seg2"], "toy", device="cpu", name="c")
    app = make_app(lab)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_layers("seg")
        await wait_until(pilot, lambda: isinstance(app.screen, LayersScreen), 10, "the Layers screen")
        screen = app.screen
        screen.open_checkpoint("seg", "seg2")
        await wait_until(pilot, lambda: screen.similar is not None, 60, "aligned RMSE and CKA")
        similar = screen.similar
        layer1 = next(layer for layer in screen.data.layers if layer.name == "1")
        for row in (r for r in stored if r["layer"] == 1):
            key = next(k.key for k in layer1.kinds if k.kind == row["kind"])
            assert similar.aligned[key] == pytest.approx(row["rmse_aligned"], rel=1e-9)
        assert similar.cka["1"] == pytest.approx(sim.linear[0, sim.layers.index("1")], abs=1e-9)
        node = next(n for n in screen.query_one("#layers-tree").root.children if n.data.name == "1")
        label = node.label.plain
        assert "max rel RMSE" in label and " al " in label and f"CKA {similar.cka['1']:.2f}" in label
