"""Snapshots of the result views and the help screen at 80x24 and 160x48 (`--snapshot-update` to accept).

The lab is tests/support/view_lab.py: fixed numbers written without training, so the pictures only
move when the views do. The console is built as tests/tui/test_snapshots.py builds it (no clock,
no blink, no polling).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_snapshots import SIZES, press, snapshot_app, steps
from view_lab import view_lab

from reuse_console.store.lab import Lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return view_lab(tmp_path / "lab")


def opened(kind: str, obj_id: str):
    return lambda pilot: pilot.app.open_view(kind, obj_id)


@pytest.mark.parametrize("size", SIZES)
def test_experiment_table(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("experiments", "grid"), press("down"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_experiment_rmse(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("experiments", "grid"), press("c"), press("c"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_plan_edited(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("plans", "plan-a"), press("down", "space"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_comparison_matrix(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("comparisons", "cmp3"), press("m"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_run(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("runs", "run-a"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, lab: Lab, size) -> None:
    run = steps(opened("plans", "plan-a"), press("f1"))
    assert snap_compare(snapshot_app(lab), terminal_size=size, run_before=run)
