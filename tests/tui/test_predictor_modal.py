"""The Scan view's predictor table (key r), and stored CKA and predictor comparisons opened in a modal."""

from __future__ import annotations

from predict_lab import scan_with_drops
from swap_lab import make_lab
from test_app import make_app, plain, run_async, wait_until
from textual.css.query import NoMatches

from reuse_console.engine.compare.cka_lab import run_cka
from reuse_console.engine.reuse.predict_lab import run_predict
from reuse_console.engine.reuse.predict_store import newest_for_scan, read_predictor
from reuse_console.tui.screens.measure_modal import MeasureModal, PredictorModal


def _text(modal, selector: str = "#measure-body") -> str:
    """What a widget of the modal shows ("" until the modal has composed)."""
    try:
        return plain(modal.query_one(selector))
    except NoMatches:
        return ""


@run_async
async def test_r_shows_the_scans_predictor_and_computes_one_when_missing(lab) -> None:
    make_lab(lab)
    scan_with_drops(lab, "seg", "ae", "s", layers="1-4")
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_scan("s")
        await wait_until(pilot, lambda: getattr(app.screen, "kind", None) == "scan", 20, "the scan")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, PredictorModal), 10, "the modal")
        modal = app.screen
        await wait_until(pilot, lambda: "measure" in _text(modal), 60, "the table")
        stored = newest_for_scan(lab, "s")
        assert stored is not None  # measured and stored as `predict` would
        result = read_predictor(lab.path("comparisons", stored), stored)
        assert result.measures == ["rmse", "relative", "bn-dt", "bn-ds", "norm"]
        body = _text(modal)
        row = result.row("relative")
        assert row is not None and f"{row.rho:.2f}" in body and f"{row.auc:.2f}" in body
        assert "reuse-console predict s" in _text(modal, "#measure-hint")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, PredictorModal), 10, "closed")

        newer = run_predict(lab, "s", measures="rmse", resamples=10, name="mine")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, PredictorModal), 10, "the modal again")
        modal = app.screen
        await wait_until(pilot, lambda: "mine" in _text(modal, "#measure-hint"), 30, "the newest one")
        overall = newer.row("rmse")
        body = _text(modal)
        assert overall is not None and f"{overall.rho:.2f}" in body and "relative" not in body


@run_async
async def test_a_stored_cka_comparison_opens_in_the_modal(lab) -> None:
    make_lab(lab)
    sim = run_cka(lab, ["seg", "ae"], "toy", device="cpu", name="c1")
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_comparison("c1")  # the Scan view's `o`: a CKA comparison opens this modal, not the RMSE grid
        await wait_until(pilot, lambda: isinstance(app.screen, MeasureModal), 10, "the modal")
        modal = app.screen
        await wait_until(pilot, lambda: "CKA on toy" in _text(modal), 30, "the table")
        body = _text(modal)
        first = f"{sim.linear[0, 0]:.3f}"
        assert "1 = seg, 2 = ae" in body and first in body
