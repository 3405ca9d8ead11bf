"""Snapshots of every screen at 80x24 and 160x48 (pytest-textual-snapshot; `--snapshot-update` to accept).

Deterministic by construction: a fixed test lab (seeded untrained models on a synthetic data set
written by the test, fixed `created` stamps), a fixed theme, no clock (timings hidden), no cursor
blink, no polling while the screenshot is taken.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from console_lab import snapshot_lab

from reuse_console.store.lab import Lab
from reuse_console.tui.app import ConsoleApp, ConsoleConfig

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


def snapshot_app(lab: Lab) -> ConsoleApp:
    """The console as the snapshots see it: fixed label, no clock, no blink, no background polling."""
    config = ConsoleConfig(
        lab=lab,
        lab_label="test-lab",
        system_stats=False,
        timings=False,
        cursor_blink=False,
        lab_poll_s=3600.0,
        job_poll_s=3600.0,
    )
    return ConsoleApp(config)


async def settle(pilot) -> None:
    """Wait until every worker (file reads, model loads, evaluations) has finished and posted."""
    for _ in range(4):
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def steps(*actions: Callable) -> Callable[..., Awaitable[None]]:
    """A run_before that performs `actions(pilot)` one by one, settling after each."""

    async def run_before(pilot) -> None:
        await settle(pilot)
        for action in actions:
            result = action(pilot)
            if inspect.isawaitable(result):
                await result
            await settle(pilot)

    return run_before


def press(*keys: str) -> Callable:
    return lambda pilot: pilot.press(*keys)


@pytest.fixture
def test_lab(tmp_path: Path) -> Lab:
    return snapshot_lab(tmp_path / "lab")


@pytest.mark.parametrize("size", SIZES)
def test_empty_lab(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size) -> None:
    monkeypatch.chdir(tmp_path)
    assert snap_compare(snapshot_app(Lab("lab")), terminal_size=size, run_before=steps())


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_lab_checkpoints(snap_compare, test_lab: Lab, size) -> None:
    run = steps(lambda p: p.app.screen.show_kind("checkpoints"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_lab_checkpoints_long_ids(snap_compare, tmp_path: Path, size) -> None:
    """Grid-cell ids (41 characters): at 80 columns `created` goes and ids lose their middle to `…`."""
    from test_lab_columns import long_id_lab

    run = steps(lambda p: p.app.screen.show_kind("checkpoints"))
    assert snap_compare(snapshot_app(long_id_lab(tmp_path / "lab")), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_layers(snap_compare, test_lab: Lab, size) -> None:
    run = steps(
        lambda p: p.app.open_layers("unet-seg"),
        lambda p: p.app.screen.query_one("#layers-tree").root.children[0].expand(),
        press("down", "down"),
    )
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_layers_compared(snap_compare, test_lab: Lab, size) -> None:
    run = steps(
        lambda p: p.app.open_layers("unet-seg", "unet-ae"),
        lambda p: p.app.screen.query_one("#layers-tree").root.children[1].expand(),
    )
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_swap_lab(snap_compare, test_lab: Lab, size) -> None:
    run = steps(press("3"), press("m", "v", "down", "W", "B"), press("enter"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_scan_table(snap_compare, test_lab: Lab, size) -> None:
    run = steps(lambda p: p.app.open_scan("seg-vs-ae"), press("down", "right"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_scan_charts(snap_compare, test_lab: Lab, size) -> None:
    run = steps(lambda p: p.app.open_scan("seg-vs-ae"), press("c"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_rmse_view(snap_compare, test_lab: Lab, size) -> None:
    run = steps(lambda p: p.app.open_comparison("seg-vs-ae-rmse"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_bn_view(snap_compare, test_lab: Lab, size) -> None:
    run = steps(lambda p: p.app.open_comparison("seg-vs-ae-rmse"), press("b"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES)
def test_jobs_train_form(snap_compare, test_lab: Lab, size) -> None:
    run = steps(press("5"), press("t"))
    assert snap_compare(snapshot_app(test_lab), terminal_size=size, run_before=run)
