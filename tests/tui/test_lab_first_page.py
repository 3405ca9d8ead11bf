"""A large lab: the console shows the Checkpoints tab before the other kinds are read."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_app import make_app, run_async, wait_until

from reuse_console.store.lab import Lab


@run_async
async def test_checkpoints_show_while_the_rest_of_the_lab_is_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swap_lab import make_checkpoint
    from toydata import write_toy

    from reuse_console.tui.screens import lab as lab_screen

    lab = Lab(tmp_path / "lab")
    write_toy(lab)
    make_checkpoint(lab, "seg-a")
    make_checkpoint(lab, "seg-b")
    release = threading.Event()
    real = lab_screen.read_listing

    def slow_listing(lab: Lab) -> lab_screen.LabListing:
        release.wait(20)  # the other kinds of a lab of 10,000 objects, still being read
        return real(lab)

    monkeypatch.setattr(lab_screen, "read_listing", slow_listing)
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#table-checkpoints")
        await wait_until(pilot, lambda: table.row_count == 2, 20, "the first page")
        assert app.screen.query_one("#lab-tabs").active == "tab-checkpoints"
        assert app.screen.query_one("#table-datasets").row_count == 0  # not read yet
        release.set()
        await wait_until(pilot, lambda: app.screen.query_one("#table-datasets").row_count == 1, 20, "the rest")
        assert table.row_count == 2 and app.screen.query_one("#lab-tabs").active == "tab-checkpoints"
