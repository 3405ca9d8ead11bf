"""Scans read together: a `--pairs` set, a re-randomisation donor and recalibration, drawn by
`report` on one axis and shown by the Scan view's overlay, with the engine's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from swap_lab import make_checkpoint, make_lab
from test_app import make_app, plain, run_async, wait_until

from reuse_console.engine.swaps.scan_store import load_scan

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def overlay_lab(lab, cli):
    make_lab(lab)
    make_checkpoint(lab, "seg2", seed=7)
    common = ("--lab", str(lab.root), "--data", "toy", "--layers", "1-4", "--device", "cpu")
    code, out, err = cli("scan", "--pairs", "seg:ae,seg2:ae", "--name", "pp", *common)
    assert code == 0, err
    code, out, err = cli("scan", "seg", "random:7", "--name", "rnd", "--recalibrate", "2", *common)
    assert code == 0, err
    return lab


def _fg(scan, row: int, recalibrated: bool = False) -> float:
    return float(scan.fg_means(recalibrated=recalibrated)[1][row])


def test_pairs_are_stored_as_a_set_and_reported_together(overlay_lab, cli, tmp_path) -> None:
    lab = overlay_lab
    one, two, rnd = (load_scan(lab, n) for n in ("pp-1", "pp-2", "rnd"))
    assert one.options["pairs"] == two.options["pairs"] == "seg:ae,seg2:ae" and "pairs" not in rnd.options
    code, out, err = cli("ls", "scans", "--json", "--lab", str(lab.root))
    assert code == 0, err
    listed = {e["id"]: e["summary"] for e in json.loads(out)}
    assert listed["pp-2"]["pairs"] == "seg:ae,seg2:ae"
    # one scan of the set is enough: report finds the other member itself
    code, out, err = cli("report", "pp-1", "rnd", "--out", str(tmp_path / "r"), "--lab", str(lab.root))
    assert code == 0, err
    figure = tmp_path / "r" / "overlay-pp-1.png"
    assert figure.read_bytes().startswith(PNG)
    index = (tmp_path / "r" / "index.md").read_text()
    assert "ae ×2 pairs: pp-1, pp-2" in index and "random recal: rnd" in index


@run_async
async def test_scan_view_overlays_donors_pairs_and_recalibration(overlay_lab) -> None:
    lab = overlay_lab
    one, two, rnd = (load_scan(lab, n) for n in ("pp-1", "pp-2", "rnd"))
    row = next(i for i, v in enumerate(one.variants) if (v.layer, v.kind) == ("2", "RV"))
    assert (rnd.variants[row].layer, rnd.variants[row].kind) == ("2", "RV")
    pair = [_fg(one, row), _fg(two, row)]
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_scan("pp-1")
        await wait_until(pilot, lambda: getattr(app.screen, "kind", None) == "scan", 20, "the scan")
        screen = app.screen
        await pilot.press("v")
        await wait_until(pilot, lambda: screen.kind == "overlay", 30, "the overlay")
        labels = [line.label for line in screen.source.lines]
        assert labels == ["ae ×2 pairs", "random", "random recal"]
        detail = screen.grid.details[("2", "RV")].plain
        assert f"ae ×2 pairs {np.mean(pair):.3f} [{min(pair):.3f}, {max(pair):.3f}]" in detail
        assert f"random {_fg(rnd, row):.3f}" in detail and f"random recal {_fg(rnd, row, True):.3f}" in detail
        assert screen.grid.cells[("2", "RV")][0] == f"{np.mean(pair):.3f}"
        assert "3 lines" in plain(screen.query_one("#scan-head"))
        assert "reuse-console report pp-1 pp-2 rnd" in plain(screen.query_one("#scan-note"))
        await pilot.press("c")  # the charts: one row per line, and the pair set's spread
        charts = plain(screen.query_one("#scan-charts"))
        assert "spread" in charts and "random recal" in charts and "ae ×2 pairs" in charts
        legend, *rows = charts.splitlines()  # the legend wraps in the widget; chart rows must fit
        assert legend.startswith("cells: the open scan") and all(len(line) <= 78 for line in rows)
        await pilot.press("v")
        await wait_until(pilot, lambda: screen.kind == "scan" and screen.ref == "pp-1", 30, "back to the scan")
        await pilot.press("b")
        await wait_until(pilot, lambda: screen.kind == "bn", 30, "the BN view")
        await pilot.press("b")
        await wait_until(pilot, lambda: screen.kind == "scan" and screen.ref == "pp-1", 30, "b again: back")
