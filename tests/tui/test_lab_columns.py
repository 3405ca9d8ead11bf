"""The Checkpoints table at narrow widths: `created` shortens, then goes, then ids are cut in their
middle with a visible `…`; the full id stays the row's key. Widths below are counted by hand: a
column is its widest cell plus 2, the table has one column less than the terminal (scrollbar)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from console_lab import snapshot_lab
from test_app import make_app, run_async, wait_until

from reuse_console.store.lab import Lab
from reuse_console.tui.render.lab_columns import elide_middle, fit_columns

HEADS = ["id", "arch", "task", "data", "epoch", "Dice/PSNR", "created"]
LONG = "acdc-reuse.rvsc2acdc-finetune-n20-s0.init"  # 41 characters, as a grid cell's checkpoints are
ROW = [LONG, "unet", "seg", "acdc", "0", "Dice 0.027", "2025-01-02 03:04"]
# id 41+2, arch 6, task 6, data 6, epoch 7, Dice/PSNR 12 = 80; created 18 (full) or 12 (date)
LONG_IDS = ("acdc-reuse.rvsc2acdc-finetune-n20-s0", LONG, "acdc-reuse.rvsc2acdc-finetune-n20-s0.last")


def test_elide_middle_keeps_both_ends() -> None:
    assert elide_middle("abcdefghij", 10) == "abcdefghij"
    assert elide_middle("abcdefghij", 7) == "abc…hij"
    assert elide_middle("abcdefghij", 6) == "ab…hij"


@pytest.mark.parametrize(
    ("width", "heads", "cells"),
    [
        (98, HEADS, ROW),  # 80 + 18: everything
        (97, HEADS, [*ROW[:-1], "2025-01-02"]),  # the date alone (80 + 12)
        (92, HEADS, [*ROW[:-1], "2025-01-02"]),
        (91, HEADS[:-1], ROW[:-1]),  # no created; the id whole (80)
        (80, HEADS[:-1], ROW[:-1]),
        (79, HEADS[:-1], ["acdc-reuse.rvsc2acd…finetune-n20-s0.init", *ROW[1:-1]]),  # id in 40
        (59, HEADS[:-1], ["acdc-reus…20-s0.init", *ROW[1:-1]]),  # id in 20
        (40, HEADS[:-1], ["acdc-re…-s0.init", *ROW[1:-1]]),  # never under 16: the table scrolls
    ],
)
def test_fit_columns_gives_way_in_order(width: int, heads: list[str], cells: list[str]) -> None:
    assert fit_columns(HEADS, [ROW], width) == (heads, [cells])


def long_id_lab(root: Path) -> Lab:
    """The snapshot lab with three grid-cell-like checkpoints (copies of unet-seg: same summary)."""
    lab = snapshot_lab(root)
    for name in LONG_IDS:
        shutil.copy(lab.path("checkpoints", "unet-seg"), lab.path("checkpoints", name))
    return lab


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "columns", "shown", "created"),
    [
        ((80, 24), HEADS[:-1], "acdc-reuse.rvsc2acd…finetune-n20-s0.init", None),
        ((93, 24), HEADS, LONG, "2025-01-02"),
        ((100, 30), HEADS, LONG, "2025-01-02 03:04"),
    ],
)
@run_async
async def test_the_checkpoints_table_fits_the_terminal(tmp_path: Path, size, columns, shown, created) -> None:
    app = make_app(long_id_lab(tmp_path / "lab"))
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one("#table-checkpoints")
        await wait_until(pilot, lambda: table.row_count == 5, 20, "the checkpoints")
        await pilot.pause()
        assert [str(c.label) for c in table.ordered_columns] == columns
        assert LONG in [r.key.value for r in table.ordered_rows]  # the full id is the row's key (Enter opens it)
        row = table.get_row(LONG)
        assert row[0] == shown and (row[-1] if created else None) == created


@pytest.mark.slow
@run_async
async def test_a_narrower_terminal_fits_the_table_again(tmp_path: Path) -> None:
    app = make_app(long_id_lab(tmp_path / "lab"))
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one("#table-checkpoints")
        await wait_until(pilot, lambda: table.row_count == 5, 20, "the checkpoints")
        assert table.get_row(LONG)[-1] == "2025-01-02 03:04"
        await pilot.resize_terminal(80, 24)
        await wait_until(pilot, lambda: len(table.ordered_columns) == 6, 20, "the table fitted to 80 columns")
        assert table.get_row(LONG)[0] == "acdc-reuse.rvsc2acd…finetune-n20-s0.init"
        await pilot.resize_terminal(100, 30)
        await wait_until(pilot, lambda: len(table.ordered_columns) == 7, 20, "the table fitted to 100 columns")
        assert table.get_row(LONG)[0] == LONG
