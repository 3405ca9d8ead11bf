"""The result views driven with Pilot, each checked against the file it shows read with h5py alone
(the experiment's stored table, the comparison's arrays, the run's epochs), and the plan editor
against `plan import` of the same edit."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_app import make_app, plain, run_async, wait_until
from view_lab import view_lab

from reuse_console.store.lab import Lab
from reuse_console.store.listing_index import INDEX_PREFIX


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    return view_lab(tmp_path / "lab")


def _strings(ds) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]


async def _open(pilot, kind: str, obj_id: str, screen: str) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
    app.open_view(kind, obj_id)
    await wait_until(pilot, lambda: type(app.screen).__name__ == screen and app.screen.data is not None, 60, screen)
    await pilot.pause()


def _row_text(table, i: int) -> list[str]:
    return [cell.plain if hasattr(cell, "plain") else str(cell) for cell in table.get_row_at(i)]


# -- experiment --------------------------------------------------------------------------------


@run_async
async def test_experiment_view_rows_equal_the_stored_table(lab: Lab) -> None:
    with h5py.File(lab.path("experiments", "grid"), "r") as f:
        t = f["table"]
        sources, modes = _strings(t["source"]), _strings(t["mode"])
        mean, std, diff = t["mean"][()], t["std"][()], t["diff"][()]
        low, high, seeds = t["diff_low95"][()], t["diff_high95"][()], t["seeds"][()]
        cells = f["cells"]
        cell_rows = list(zip(_strings(cells["source"]), _strings(cells["mode"]), _strings(cells["checkpoint"])))
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "experiments", "grid", "ExperimentScreen")
        table = app.screen.query_one("#exp-table")
        assert table.row_count == len(sources) == 4
        for i in range(table.row_count):
            text = _row_text(table, i)
            assert text[:4] == [sources[i], modes[i], "4", str(seeds[i])]
            for c in range(5):  # bg RV MYO LV, then the stored fg column
                lines = text[4 + c].split("\n")
                assert lines[0] == f"{mean[i, c]:.3f}"
                assert lines[1] == f"±{std[i, c]:.3f}".replace("0.", ".")
                if np.isnan(diff[i, c]):
                    assert len(lines) == 2 or lines[2] == ""
                else:
                    star = "*" if (low[i, c] > 0 or high[i, c] < 0) else ""
                    assert lines[2] == f"({diff[i, c]:+.3f}{star})".replace("0.", ".")
        # 80 columns: every column fits without scrolling sideways
        assert table.virtual_size.width <= table.size.width
        # Enter on the third row lists its cells' checkpoints (one per seed)
        await pilot.press("down", "down", "enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "PickModal", 10, "the cell picker")
        listed = [c for c, _ in app.screen.choices]
        assert listed == [ckpt for s, m, ckpt in cell_rows if (s, m) == (sources[2], modes[2])]
        await pilot.press("escape")
        # the Chart and RMSE tabs
        await pilot.press("c")
        await pilot.pause()
        chart = plain(app.screen.query_one("#exp-chart"))
        assert f"{mean[1, 1]:.3f}" in chart and "RV: Dice per row" in chart
        await pilot.press("c")
        await pilot.pause()
        rmse = plain(app.screen.query_one("#exp-rmse"))
        assert "RM  (max" in rmse and "W  (max" in rmse


# -- plan --------------------------------------------------------------------------------------


@run_async
async def test_plan_edit_and_save_equals_plan_import_of_the_same_edit(lab: Lab, tmp_path: Path, cli) -> None:
    from reuse_console.engine.reuse.plans import load_plan

    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "plans", "plan-a", "PlanScreen")
        screen = app.screen
        summary = plain(screen.query_one("#plan-summary"))
        # drops over 0.05 (view_lab.write_plan): RV of 1 and 2, W of 2, 3, 4 and head; 8 of 14 reused
        assert "not reusable: RV: 1,2; W: 2,3,4,head" in summary
        assert "reused 8 of 14 tensors (57.1%)" in summary
        # cursor starts on layer 1 RM: make it not reusable; then layer 2 W (0.5) reusable
        await pilot.press("space")
        await pilot.press("down", "right", "right", "space")
        summary = plain(screen.query_one("#plan-summary"))
        assert "not reusable: RM: 1; RV: 1,2; W: 3,4,head" in summary and "2 edited" in summary
        await pilot.press("s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "PromptModal", 10, "the name prompt")
        app.screen.query_one("Input").value = "plan-a-ui"
        await pilot.press("enter")
        await wait_until(pilot, lambda: lab.exists("plans", "plan-a-ui"), 30, "the saved plan")
    # the same edit by hand in the exported TOML, imported with the CLI
    out = tmp_path / "plan.toml"
    assert cli("plan", "export", "plan-a", "--out", str(out), "--lab", str(lab.root))[0] == 0
    text = out.read_text()
    start = text.index("\n[not_reusable]\n") + 1  # the table, not the header comment naming it
    end = text.index("\n\n", start)
    text = text[:start] + '[not_reusable]\nRM = [1]\nRV = [1, 2]\nW = [3, 4, "head"]\nB = []' + text[end:]
    out.write_text(text)
    code, _, err = cli("plan", "import", str(out), "--name", "plan-a-cli", "--lab", str(lab.root))
    assert code == 0, err
    ui, imported = load_plan(lab, "plan-a-ui"), load_plan(lab, "plan-a-cli")
    assert ui.tensors == imported.tensors
    assert (ui.arch, ui.criteria) == (imported.arch, imported.criteria)
    assert ui.provenance["from"] == "plan-a" and ui.provenance["recipient"] == "seg"


# -- comparison --------------------------------------------------------------------------------


@run_async
async def test_comparison_view_pair_and_matrix_show_the_stored_relative_rmse(lab: Lab) -> None:
    with h5py.File(lab.path("comparisons", "cmp3"), "r") as f:
        relative, layers = f["relative"][()], _strings(f["layers/name"])
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "comparisons", "cmp3", "ComparisonScreen")
        table = app.screen.query_one("#cmp-table")
        assert [str(c.label) for c in table.columns.values()] == ["layer", "RM", "W"]
        for li, layer in enumerate(layers):
            expected = ["" if np.isnan(v) else f"{v:.3f}" for v in relative[0, li]]
            assert _row_text(table, li) == [layer, *expected]
        await pilot.press("p")  # the second pair
        assert _row_text(table, 0)[1:] == [f"{v:.3f}" for v in relative[1, 0]]
        await pilot.press("m", "k")  # the matrix of every pair, then the next kind: W
        assert [str(c.label) for c in table.columns.values()] == ["layer", "1-2", "1-3", "2-3"]
        assert _row_text(table, 2)[1:] == [f"{v:.3f}" for v in relative[:, 2, 1]]
        await pilot.press("c")
        await pilot.pause()
        sparks = plain(app.screen.query_one("#cmp-sparks"))
        assert f"max {np.nanmax(relative[0, :5, 1]):.3g}" in sparks  # pair 1-2 over the numbered layers


# -- run ---------------------------------------------------------------------------------------


@run_async
async def test_run_view_shows_the_stored_epochs(lab: Lab) -> None:
    with h5py.File(lab.path("runs", "run-a"), "r") as f:
        epochs = f["epochs"][()]
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "runs", "run-a", "RunScreen")
        body = plain(app.screen.query_one("#run-body"))
        assert "finished" in plain(app.screen.query_one("#view-head"))
        for row in epochs:
            assert f"{row['train_loss']:.4f}" in body and f"{row['val_dice_fg']:.3f}" in body
        assert "Dice fg" in body and f"{epochs['val_dice_fg'][-1]:.3f}" in body
        await pilot.press("escape")
        assert type(app.screen).__name__ == "LabScreen"


# -- help and palette --------------------------------------------------------------------------


@run_async
async def test_help_lists_the_screens_own_bindings_and_closes(lab: Lab) -> None:
    from reuse_console.tui.screens.plan_view import PlanScreen

    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "plans", "plan-a", "PlanScreen")
        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        text = plain(app.screen.query_one("#help-body"))
        for binding in PlanScreen.BINDINGS:
            assert binding.description in text
        assert "Back" in text and "reuse plan" in text
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "PlanScreen"


@run_async
async def test_the_palette_offers_the_screens_key_actions(lab: Lab) -> None:
    from reuse_console.tui.app import binding_commands

    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "plans", "plan-a", "PlanScreen")
        commands = {name: callback for name, _, callback in binding_commands(app.screen, set())}
        assert {"Plan: Save (s)", "Plan: Undo (u)", "Plan: Back (esc)"} <= set(commands)
        await commands["Plan: Save (s)"]()
        await pilot.pause()
        assert type(app.screen).__name__ == "PromptModal"


@run_async
async def test_run_view_follows_a_run_while_it_trains(lab: Lab) -> None:
    """A run still being written is read again on the view's poll: a new epoch appears."""
    from reuse_console.store.runs import RunWriter

    columns = ["epoch", "train_loss", "val_dice_fg", "seconds", "images_per_s", "best"]
    meta = {"arch": "unet", "task": "seg", "data": "acdc", "epochs": 3, "classes": [], "present": []}
    writer = RunWriter.create(lab.path("runs", "live"), meta=meta, epoch_columns=columns)
    try:
        writer.append_step(1, 1, 0.9, 50.0)
        writer.append_epoch(
            {"epoch": 1, "train_loss": 0.9, "val_dice_fg": 0.25, "seconds": 1, "images_per_s": 50, "best": 1}
        )
        app = make_app(lab, job_poll_s=0.2)
        async with app.run_test(size=(80, 24)) as pilot:
            await _open(pilot, "runs", "live", "RunScreen")
            assert "running" in plain(app.screen.query_one("#view-head"))
            assert "0.9000" in plain(app.screen.query_one("#run-body"))
            writer.append_step(2, 2, 0.4321, 50.0)
            writer.append_epoch(
                {"epoch": 2, "train_loss": 0.4321, "val_dice_fg": 0.5, "seconds": 1, "images_per_s": 50, "best": 1}
            )
            await wait_until(pilot, lambda: "0.4321" in plain(app.screen.query_one("#run-body")), 20, "epoch 2")
            writer.finish("finished")
            await wait_until(pilot, lambda: "finished" in plain(app.screen.query_one("#view-head")), 20, "the end")
    finally:
        writer.finish("finished")


def test_details_write_numbers_for_people() -> None:
    from reuse_console.tui.screens.detail import human_text

    assert human_text(2.2065603733062744) == "2.207"
    assert human_text({"lr": 0.0012345678, "sizes": [1.0, 0.333333333]}) == '{"lr": 0.001235, "sizes": [1.0, 0.3333]}'
    assert human_text("patient001") == "patient001" and human_text(12) == "12" and human_text(float("nan")) == "nan"


@run_async
async def test_the_pickers_descriptions_line_up_with_long_ids(lab: Lab) -> None:
    from reuse_console.tui.screens.pick import PickModal

    long_id = "acdc-reuse.rvsc2acdc-finetune-n4-s0.last"  # 40 characters, as the grid's cells are named
    app = make_app(lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(PickModal("Pick", [("short", "unet seg"), (long_id, "unet ae")]))
        await pilot.pause()
        options = app.screen.query_one("#pick-options")
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert [p.index("unet") for p in prompts] == [len(long_id) + 2] * 2


def test_scrollbar_thumbs_are_whole_cells() -> None:
    """Textual's thumb ends are partial blocks (▂, ▆) that read as stray glyphs in 256 colours."""
    from reuse_console.tui.app import CellScrollBarRender

    for position in (0.0, 3.3, 7.7, 12.5):
        segments = CellScrollBarRender.render_bar(size=20, virtual_size=55, window_size=20, position=position)
        assert {segment.text for segment in segments.segments} == {" "}


@run_async
async def test_help_shows_a_remapped_key_as_remapped(lab: Lab) -> None:
    app = make_app(lab, keymap={"plan.save": "ctrl+s"})
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "plans", "plan-a", "PlanScreen")
        await pilot.press("f1")
        rows = {row.description: row.keys for row in app.screen.rows}
        assert rows["Save"] == "^s"


@run_async
async def test_lab_tables_keep_the_free_text_column_last(lab: Lab) -> None:
    """At 80 columns the long summary or command is what gets cut, not the time behind it."""
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        await pilot.pause()
        heads = {
            kind: [str(c.label) for c in app.screen.query_one(f"#table-{kind}").columns.values()]
            for kind in ("runs", "plans", "jobs", "checkpoints")
        }
        assert heads["runs"] == heads["plans"] == ["id", "created", "summary"]
        assert heads["jobs"] == ["id", "status", "started", "command"]
        assert heads["checkpoints"][-1] == "created"
        app.screen.show_kind("plans")
        await pilot.pause()
        table = app.screen.query_one("#table-plans")
        row = [str(c) for c in table.get_row_at(0)]
        assert row[0] == "plan-a" and row[1][:4].isdigit() and row[2].startswith("arch=unet")


@run_async
async def test_experiment_view_follows_a_running_grid(lab: Lab) -> None:
    """A grid rewrites its experiment after every cell; the view re-reads it while it runs."""
    from reuse_console.engine.grids.experiment import read_experiment, write_experiment

    path = lab.path("experiments", "grid")
    finished = read_experiment(path)
    running = read_experiment(path)
    running.status = "running"
    for cell in running.cells[6:]:  # the last row (seg finetune) not trained yet
        cell.dice = np.full_like(cell.dice, np.nan)
    write_experiment(path, running)
    app = make_app(lab, lab_poll_s=0.5)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "experiments", "grid", "ExperimentScreen")
        table = app.screen.query_one("#exp-table")
        assert "6/8 cells  running" in plain(app.screen.query_one("#view-head"))
        assert _row_text(table, 3)[3] == "0" and _row_text(table, 3)[4].startswith("-")
        write_experiment(path, finished)
        await wait_until(pilot, lambda: "complete" in plain(app.screen.query_one("#view-head")), 20, "the update")
        assert _row_text(table, 3)[3] == "2"


@run_async
async def test_a_cka_comparison_opens_in_the_measure_modal(lab: Lab) -> None:
    """CKA comparisons share the comparisons folder; Enter on one shows it, not an RMSE error."""
    from reuse_console.engine.compare.cka_store import Similarity, write_similarity

    sim = Similarity(
        ["m-a", "m-b"],
        ["1", "2"],
        [1, 2],
        [(0, 1)],
        np.array([[0.9, 0.4]]),
        np.array([[0.8, 0.3]]),
        np.array([[8, 8], [8, 8]]),
        data="acdc",
        samples=12,
        name="cka2",
    )
    write_similarity(lab.path("comparisons", "cka2"), sim)
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_view("comparisons", "cka2")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "MeasureModal", 30, "the CKA modal")
        await pilot.press("escape")
        assert type(app.screen).__name__ == "LabScreen"


@pytest.mark.parametrize("name", ["plan-a", "bad/name"])
@run_async
async def test_saving_a_plan_under_a_taken_or_bad_name_says_so_in_one_line(lab: Lab, name: str) -> None:
    before = _plan_files(lab)
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "plans", "plan-a", "PlanScreen")
        await pilot.press("space", "s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "PromptModal", 10, "the name prompt")
        app.screen.query_one("Input").value = name
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ErrorModal", 20, "the error box")
        assert "\n" not in app.screen.message and app.screen.detail == ""
    assert _plan_files(lab) == before


def _plan_files(lab: Lab) -> list[str]:
    """The plans folder's files, less the listing index the Lab screen may write meanwhile."""
    return sorted(p.name for p in lab.folder("plans").iterdir() if not p.name.startswith(INDEX_PREFIX))


@run_async
async def test_the_palette_opens_grids_plans_runs_and_comparisons_by_name(lab: Lab) -> None:
    from reuse_console.tui.app import ConsoleCommands

    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        commands = {name: callback for name, _, callback in ConsoleCommands(app.screen)._commands()}
        assert {"Grid grid", "Plan plan-a", "Run run-a", "Comparison cmp3"} <= set(commands)
        assert "Lab: Open (⏎)" in commands  # the screen's keys, by name
        commands["Plan plan-a"]()
        await wait_until(pilot, lambda: type(app.screen).__name__ == "PlanScreen", 20, "the plan view")


@run_async
async def test_enter_in_the_matrix_picks_the_pair_under_the_cursor(lab: Lab) -> None:
    with h5py.File(lab.path("comparisons", "cmp3"), "r") as f:
        relative = f["relative"][()]
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open(pilot, "comparisons", "cmp3", "ComparisonScreen")
        table = app.screen.query_one("#cmp-table")
        await pilot.press("m", "right", "right", "right", "enter")  # the matrix (RM), column 2-3, Enter
        assert [str(c.label) for c in table.columns.values()] == ["layer", "RM", "W"]
        assert _row_text(table, 0)[1:] == [f"{v:.3f}" for v in relative[2, 0]]  # pair 3 = (m-b, m-c)
        await pilot.press("enter")  # on a pair's column: that kind's matrix
        assert [str(c.label) for c in table.columns.values()][1:] == ["1-2", "1-3", "2-3"]
