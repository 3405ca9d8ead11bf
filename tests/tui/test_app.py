"""The console driven with Textual's Pilot: what a user sees after each key, checked against the engine."""

from __future__ import annotations

import asyncio
import functools
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from console_lab import console_lab
from rich.console import Console

from reuse_console.store.lab import Lab
from reuse_console.tui.app import ConsoleApp, ConsoleConfig


def run_async(test: Callable) -> Callable:
    """Run an async test body with asyncio (no async pytest plugin needed)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return wrapper


def make_app(lab: Lab, **overrides) -> ConsoleApp:
    config = dict(lab=lab, lab_label="test-lab", system_stats=False, job_poll_s=0.2, lab_poll_s=1.0)
    config.update(overrides)
    return ConsoleApp(ConsoleConfig(**config))


async def wait_until(pilot, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Let the app run until `predicate()` holds (workers and timers keep going meanwhile)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        await pilot.pause(0.05)


def plain(widget) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(widget.content)
    return console.export_text()


@pytest.fixture
def test_lab(tmp_path: Path) -> Lab:
    return console_lab(tmp_path / "lab")


# -- empty lab -----------------------------------------------------------------------------


@run_async
async def test_empty_lab_shows_how_to_start_and_keys_still_work(tmp_path: Path) -> None:
    app = make_app(Lab(tmp_path / "missing"))
    async with app.run_test(size=(80, 24)) as pilot:
        from reuse_console.tui.widgets.empty_lab import EmptyLab

        await wait_until(pilot, lambda: app.screen.query_one("#lab-switcher").current == "lab-empty", 10, "the guide")
        text = plain(app.screen.query_one(EmptyLab))
        assert "does not exist yet" in text
        assert "demo --quick" in text and "data phantom" in text
        await pilot.press("5")
        assert type(app.screen).__name__ == "JobsScreen"
        await wait_until(pilot, lambda: "No jobs yet" in plain(app.screen.query_one("#job-view")), 10)


# -- lab and layers ------------------------------------------------------------------------


def _small_lab(root: Path, checkpoint: bool) -> Lab:
    """A data set, and with `checkpoint` one untrained checkpoint (quick to write)."""
    from swap_lab import make_checkpoint
    from toydata import write_toy

    lab = Lab(root)
    write_toy(lab)
    if checkpoint:
        make_checkpoint(lab, "seg")
    return lab


def _active_tab(app: ConsoleApp) -> str:
    return app.screen.query_one("#lab-tabs").active


@pytest.mark.parametrize(("checkpoint", "tab"), [(True, "tab-checkpoints"), (False, "tab-datasets")])
@run_async
async def test_the_console_opens_on_checkpoints_when_the_lab_has_some(tmp_path: Path, checkpoint, tab) -> None:
    app = make_app(_small_lab(tmp_path / "lab", checkpoint))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        await pilot.pause()
        assert _active_tab(app) == tab
        assert app.focused is app.screen.query_one(f"#table-{tab.removeprefix('tab-')}")
        await pilot.press("down")  # the table has the focus: keys work at once
        await pilot.press("right")
        assert _active_tab(app) != tab


@run_async
async def test_the_first_listing_leaves_a_user_who_already_moved_where_they_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing is read in a worker; a key pressed before it arrives wins over the opening tab."""
    import threading

    from reuse_console.tui.screens import lab as lab_screen

    release = threading.Event()
    real, real_first = lab_screen.read_listing, lab_screen.first_page

    def slow_listing(lab: Lab) -> lab_screen.LabListing:
        release.wait(20)
        return real(lab)

    def slow_first(lab: Lab) -> lab_screen.LabListing:
        release.wait(20)
        return real_first(lab)

    monkeypatch.setattr(lab_screen, "read_listing", slow_listing)
    monkeypatch.setattr(lab_screen, "first_page", slow_first)  # the first page comes from the worker too
    app = make_app(_small_lab(tmp_path / "lab", checkpoint=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("left")  # Data -> Jobs, before the lab is read
        assert _active_tab(app) == "tab-jobs"
        release.set()
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        await pilot.pause()
        assert app.screen.query_one("#table-checkpoints").row_count == 1
        assert _active_tab(app) == "tab-jobs"


@pytest.mark.slow
@run_async
async def test_lab_lists_filters_and_opens_a_checkpoints_layer_tree(test_lab: Lab) -> None:
    from reuse_console.engine.models.layers import LayerIndex
    from reuse_console.engine.models.registry import load_model

    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#table-checkpoints")
        await wait_until(pilot, lambda: table.row_count == 6, 20, "checkpoints listed")
        scans = app.screen.query_one("#table-scans")  # the rest follows the first page
        await wait_until(pilot, lambda: scans.row_count == 1, 20, "the other kinds listed")
        assert app.screen.query_one("#table-datasets").row_count == 1
        app.screen.show_kind("checkpoints")
        await pilot.press("a", "e")  # typing on a table starts the filter
        assert app.screen.query_one("#lab-filter").value == "ae"
        assert table.row_count == 3  # unet-ae, unet-ae.init and unet-ae.last
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "LayersScreen", 10, "the Layers screen")
        tree = app.screen.query_one("#layers-tree")
        await wait_until(pilot, lambda: app.screen.data is not None, 30, "the layers")
        model, _ = load_model(test_lab, "unet-ae")
        index = LayerIndex.from_model(model, 1)
        names = [str(node.data.name) for node in tree.root.children]
        assert names == [layer.name for layer in index.layers]
        assert names[:18] == [str(i) for i in range(1, 19)] and names[-1] == "head"
        first = tree.root.children[0]
        assert [k.data.kind for k in first.children] == ["RM", "RV", "RW", "RB", "W", "B"]


@pytest.mark.slow
@run_async
async def test_layer_statistics_and_rmse_are_the_engines(test_lab: Lab) -> None:
    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.compare.stats import tensor_stats
    from reuse_console.engine.models.registry import load_model

    app = make_app(test_lab)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_layers("unet-seg", "unet-ae")
        await wait_until(pilot, lambda: getattr(app.screen, "data", None) is not None, 30, "the layers")
        tree = app.screen.query_one("#layers-tree")
        layer3 = tree.root.children[2]
        weight = next(node for node in layer3.children if node.data.kind == "W")
        model, _ = load_model(test_lab, "unet-seg")
        expected = tensor_stats(model.state_dict()[weight.data.key])
        assert weight.data.stats == expected
        layer3.expand()
        await pilot.pause()
        tree.move_cursor(weight)
        await pilot.pause()
        detail = plain(app.screen.query_one("#layers-detail"))
        assert f"mean {expected.mean:+.4g}" in detail and f"L2 {expected.l2:.4g}" in detail
        comparison = run_rmse(test_lab, ["unet-seg", "unet-ae"], layers="3", kinds="W", name="check")
        assert weight.data.rmse == pytest.approx(float(comparison.rmse[0, 0, 0]), rel=1e-12)
        assert "RMSE to unet-ae" in detail


# -- swap lab ------------------------------------------------------------------------------


@pytest.mark.slow
@run_async
async def test_swap_round_trip_shows_the_engines_dice(test_lab: Lab) -> None:
    from reuse_console.engine.swaps.swap_lab import run_swap

    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None and not screen.busy, 60, "the swap session")
        assert (screen.recipient, screen.donor, screen.data) == ("unet-seg", "unet-ae", "acdc")
        await pilot.press("m", "v", "down", "W", "B")  # layer 1: RM RV; layer 2: conv W and B
        assert screen.ticked == {("1", "RM"), ("1", "RV"), ("2", "W"), ("2", "B")}
        await pilot.press("w", "w")  # ticking twice unticks
        assert ("2", "RW") not in screen.ticked
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.session.history) == 1 and not screen.busy, 60, "the evaluation")
        engine = run_swap(
            test_lab, "unet-seg", "unet-ae", "acdc", layers="1-2", kinds="RM,RV,W,B", device="cpu", name="check"
        )
        # run_swap swaps every listed kind of both layers; the same targets in the Swap lab:
        outcome = screen.session.evaluate(
            [("1", k) for k in ("RM", "RV", "W", "B")] + [("2", k) for k in ("RM", "RV", "W", "B")]
        )
        np.testing.assert_allclose(outcome.result.per_subject, engine.dice[0], atol=1e-12)
        shown = screen.session.history[0]
        text = plain(screen.query_one("#swap-result"))
        for cls, value in shown.dice.items():
            assert f"{value:.4f}" in text, cls
        history = screen.query_one("#swap-history")
        assert history.row_count == 2  # baseline and the swap
        assert "1 RM,RV; 2 W,B" in text
        await pilot.press("f")  # the next tries run the whole recipient, as `swap --full-forward` does
        assert screen.session.full_forward and "full forward" in plain(screen.query_one("#swap-head"))


@pytest.mark.slow
@run_async
async def test_swap_lab_takes_the_recipients_initial_weights_as_donor(test_lab: Lab) -> None:
    """The donor picker offers init and random:0; a try with donor init is `swap R init`'s."""
    from reuse_console.engine.swaps.swap_lab import run_swap

    app = make_app(test_lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None and not screen.busy, 60, "the swap session")
        await pilot.press("d")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "PickModal", 20, "the donor picker")
        await pilot.press(*"init", "enter")
        await wait_until(pilot, lambda: screen.donor == "init", 20, "donor init chosen")
        await wait_until(
            pilot, lambda: screen.session.donor_ref == "init" and not screen.busy, 60, "the session with donor init"
        )
        await pilot.press("W")
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.session.history) == 1 and not screen.busy, 60, "the evaluation")
        engine = run_swap(test_lab, "unet-seg", "init", "acdc", layers="1", kinds="W", device="cpu", name="i")
        np.testing.assert_allclose(screen.session.history[0].result.per_subject, engine.dice[0], atol=1e-12)


@pytest.mark.slow
@run_async
async def test_swap_lab_recalibrates_like_swap_recalibrate(test_lab: Lab) -> None:
    """Key c: each try also with norm statistics re-estimated; the values are `swap --recalibrate 8`'s."""
    from reuse_console.engine.swaps.swap_lab import run_swap

    app = make_app(test_lab)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_until(pilot, lambda: screen.session is not None and not screen.busy, 60, "the swap session")
        await pilot.press("c", "m", "v")
        assert "recal 8" in plain(screen.query_one("#swap-head"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(screen.session.history) == 1 and not screen.busy, 60, "the evaluation")
        shown = screen.session.history[0]
        engine = run_swap(
            test_lab, "unet-seg", "unet-ae", "acdc", layers="1", kinds="RM,RV", device="cpu", recalibrate=8, name="c"
        )
        np.testing.assert_allclose(shown.recalibrated.result.per_subject, engine.recalibrated[0], atol=1e-12)
        np.testing.assert_allclose(shown.recalibrated.baseline.per_subject, engine.recalibrated_baseline, atol=1e-12)
        text = plain(screen.query_one("#swap-result"))
        assert "recalibrated: norm statistics" in text and f"{shown.recalibrated.result.dice_fg:.4f}" in text
        await pilot.press("c")
        assert "recal" not in plain(screen.query_one("#swap-head"))


# -- jobs ----------------------------------------------------------------------------------


def _train_form_fill(pilot, epochs: str, name: str):
    async def fill() -> None:
        screen = pilot.app.screen
        screen.query_one("#f-arch_config").value = '{"base_width": 4}'
        screen.query_one("#f-epochs").value = epochs
        screen.query_one("#f-batch").value = "8"
        screen.query_one("#f-name").value = name
        screen.query_one("#f-device").value = "cpu"
        await pilot.pause()

    return fill


@run_async
async def test_job_forms_show_and_start_the_threads_option(test_lab: Lab) -> None:
    """Both forms carry `--threads` (default 1, what the CLI does on CPU) in the line they show and start."""
    app = make_app(test_lab)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("5", "t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TrainForm", 10, "the train form")
        form = app.screen
        shown = plain(form.query_one("#form-command"))
        assert shown.startswith("$ reuse-console train --data acdc") and " --threads 1" in shown, shown
        form.query_one("#f-threads").value = "2"
        await pilot.pause()
        assert " --threads 2" in plain(form.query_one("#form-command"))
        assert form.argv()[-2:] == ["--threads", "2"]  # what ctrl+s hands to start_job
        await pilot.press("escape")
        await pilot.press("s")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ScanForm", 10, "the scan form")
        shown = plain(app.screen.query_one("#form-command"))
        assert shown.startswith("$ reuse-console scan unet-seg unet-ae") and " --threads 1" in shown, shown


@run_async
async def test_train_form_sets_how_a_user_model_is_fed_and_read(tmp_path: Path, monkeypatch) -> None:
    """input, output key, deep supervision and depth start at train's defaults and stay off the
    command line until set; then the line shown and the job started carry exactly those options."""
    from reuse_console.engine.training.spec import TRAIN_DEFAULTS
    from reuse_console.tui.screens.jobs import JobsScreen

    started: list[list[str]] = []
    monkeypatch.setattr(JobsScreen, "start", lambda self, argv: started.append(argv))
    app = make_app(_small_lab(tmp_path / "lab", checkpoint=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5", "t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TrainForm", 10, "the train form")
        form = app.screen
        assert form.query_one("#f-input").value == TRAIN_DEFAULTS.input == "as-is"
        assert form.query_one("#f-output").value == "" and TRAIN_DEFAULTS.output is None
        assert form.query_one("#f-deep_supervision").value is TRAIN_DEFAULTS.deep_supervision is False
        assert form.query_one("#f-depth").value == "" and TRAIN_DEFAULTS.depth is None

        def shown() -> str:
            return " ".join(plain(form.query_one("#form-command")).split())

        for flag in ("--input", "--output", "--deep-supervision", "--main-head", "--depth"):
            assert flag not in shown()
        form.query_one("#f-input").value = "repeat"
        form.query_one("#f-output").focus()
        await pilot.press(*"logits")
        form.query_one("#f-deep_supervision").focus()
        await pilot.press("space")
        form.query_one("#f-depth").focus()
        await pilot.press("8")
        await pilot.pause()
        assert "--input repeat --output logits --deep-supervision --depth 8 --epochs" in shown()
        form.query_one("#f-deep_supervision").focus()
        await pilot.press("space")  # off again: the default, so no --main-head either
        await pilot.pause()
        assert "--deep-supervision" not in shown() and "--main-head" not in shown()
        await pilot.press("space", "ctrl+s")
        await wait_until(pilot, lambda: bool(started), 10, "the job start")
    argv = started[0]
    assert argv[:3] == ["train", "--data", "toy"]
    i = argv.index("--input")
    assert argv[i : i + 7] == ["--input", "repeat", "--output", "logits", "--deep-supervision", "--depth", "8"]


def test_the_forms_input_choices_are_the_adapters() -> None:
    """The form offers engine/training/spec.py's INPUTS (torch-free); the adapter accepts exactly those."""
    from reuse_console.engine.models.adapters import INPUTS as ADAPTER_INPUTS
    from reuse_console.engine.training.spec import INPUTS

    assert INPUTS == ADAPTER_INPUTS


@pytest.mark.slow
@run_async
async def test_start_a_training_job_and_follow_it_to_the_end(test_lab: Lab) -> None:
    from reuse_console.engine.jobs.control import get_job

    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5", "t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TrainForm", 10, "the form")
        await _train_form_fill(pilot, "2", "job-seg")()
        assert app.screen.argv()[:3] == ["train", "--data", "acdc"]
        await pilot.press("ctrl+s")
        screen = app.screen
        assert type(screen).__name__ == "JobsScreen"
        await wait_until(
            pilot,
            lambda: screen.snapshot is not None and screen.snapshot.status == "finished",
            240,
            "the job to finish",
        )
        snap = screen.snapshot
        assert snap.done == snap.total > 0
        assert [row["epoch"] for row in snap.epoch_rows] == [1, 2]
        assert snap.result == "job-seg"
        assert get_job(test_lab, snap.id).returncode == 0
        view = plain(screen.query_one("#job-view"))
        assert "finished" in view and "100.0%" in view and "reuse-console train --data acdc" in view
        assert "--threads 1" in snap.command
        await pilot.press("y")
        assert app.clipboard == snap.command
        await pilot.press("o")  # the result opens in the Layers screen
        await wait_until(pilot, lambda: type(app.screen).__name__ == "LayersScreen", 10)
        await wait_until(pilot, lambda: app.screen.checkpoint == "job-seg", 10)


@pytest.mark.slow
@run_async
async def test_keys_work_while_a_job_runs_and_a_job_can_be_cancelled(test_lab: Lab) -> None:
    from reuse_console.engine.jobs.control import get_job

    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5", "t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TrainForm", 10, "the form")
        await _train_form_fill(pilot, "200", "long-job")()
        await pilot.press("ctrl+s")
        jobs = app.screen
        await wait_until(pilot, lambda: jobs.snapshot is not None and jobs.snapshot.done > 0, 120, "the first steps")
        job_id = jobs.snapshot.id
        # a keypress changes the screen while the job runs
        await pilot.press("1")
        assert type(app.screen).__name__ == "LabScreen"
        assert get_job(test_lab, job_id).status == "running"
        await pilot.press("5")
        assert app.screen is jobs
        await pilot.press("x")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal", 5, "the confirmation")
        await pilot.press("n")  # no: nothing happens
        await pilot.pause(0.3)
        assert get_job(test_lab, job_id).status == "running"
        await pilot.press("x", "y")
        await wait_until(pilot, lambda: jobs.snapshot is not None and jobs.snapshot.status == "cancelled", 30, "cancel")
        assert get_job(test_lab, job_id).status == "cancelled"


@pytest.mark.slow
@run_async
async def test_command_palette_reaches_screens_and_objects(test_lab: Lab) -> None:
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        await pilot.press("ctrl+p")
        await pilot.press(*"go to jobs")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "JobsScreen", 10, "the Jobs screen")
        await pilot.press("ctrl+p")
        await pilot.press(*"scan seg-vs-ae")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ScanScreen", 10, "the Scan view")
        await wait_until(pilot, lambda: app.screen.grid is not None, 20, "the scan")
        assert app.screen.ref == "seg-vs-ae"
        assert app.screen.query_one("#scan-table").row_count == len(app.screen.grid.rows) == 23


BASIC_UNET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "features": [4, 4, 8, 8, 16, 4]}


def _norm_lab(root: Path, kind: str) -> Lab:
    """Two checkpoints and their RMSE comparison `cmp`: MONAI BasicUNets with affine InstanceNorm
    (no running statistics anywhere), or MixedNorms (tests/support/norm_nets.py: some have them)."""
    import norm_nets
    import torch
    from monai.networks.nets import BasicUNet

    from reuse_console.engine.compare.rmse import run_rmse
    from reuse_console.engine.models.registry import save_model
    from reuse_console.store.checkpoints import CheckpointMeta

    lab = Lab(root)
    for name, seed in (("net-a", 1), ("net-b", 2)):
        torch.manual_seed(seed)
        if kind == "instance":
            config = {**BASIC_UNET, "norm": ["instance", {"affine": True}]}
            model: torch.nn.Module = BasicUNet(**{**config, "norm": ("instance", {"affine": True})})
            arch = "monai.networks.nets:BasicUNet"
        else:
            config, model, arch = {"in_channels": 1, "out_channels": 6}, norm_nets.MixedNorms(), "norm_nets:MixedNorms"
        save_model(lab, name, model.eval(), CheckpointMeta(arch=arch, arch_config=config, task="seg"))
    run_rmse(lab, ["net-a", "net-b"], name="cmp")
    return lab


@pytest.mark.parametrize("kind", ["instance", "mixed"])
@run_async
async def test_bn_view_says_which_norms_have_no_running_statistics(tmp_path: Path, cli, kind: str) -> None:
    """The BN view of models whose norms keep no running statistics shows the `bn` command's note
    (instead of an error or an empty table); with some that do, their rows and the same note."""
    from reuse_console.tui.screens.modals import ErrorModal

    lab = _norm_lab(tmp_path / "lab", kind)
    code, out, err = cli("bn", "net-a", "net-b", "--lab", str(lab.root))
    said = " ".join((err if code else out).split())  # the CLI's last line(s), wrapped at 80 columns
    app = make_app(lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.listing is not None, 20, "the lab listing")
        app.open_comparison("cmp")
        await wait_until(pilot, lambda: getattr(app.screen, "kind", None) == "comparison", 20, "the comparison")
        await pilot.press("b")
        await wait_until(pilot, lambda: app.screen.kind == "bn", 30, "the BN view")
        screen = app.screen
        assert not isinstance(screen, ErrorModal)
        note = screen.query_one("#scan-note")
        shown = " ".join(plain(note).split())
        assert note.display and said.endswith(shown) and "running statistics" in shown
        rows = screen.query_one("#scan-table").row_count
        if kind == "instance":
            assert code == 2 and rows == 0 and shown.endswith("needs (its norms: InstanceNorm2d 18)")
            assert "reads norms with running statistics" in plain(screen.query_one("#scan-detail"))
        else:
            assert code == 0 and list(screen.grid.rows) == ["1", "2", "inorm"] and rows == 3
            assert shown.startswith("4 norm layer(s) without running statistics")
        await pilot.press("4")  # still the Scans screen: keys go on working
        assert app.screen is screen


def test_the_console_and_the_cli_start_without_torch() -> None:
    """Opening the console over SSH, `--help` and completion should not wait for torch: it is
    loaded by the first worker or command that needs it."""
    import subprocess
    import sys

    code = "import sys, reuse_console.tui.app, reuse_console.tui.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@run_async
async def test_keys_can_be_remapped_by_binding_id(tmp_path: Path) -> None:
    from reuse_console.store.errors import UserError
    from reuse_console.tui.app import parse_keymap

    keymap = parse_keymap("app.screen.jobs=f5, app.screen.lab=f1")
    assert keymap == {"app.screen.jobs": "f5", "app.screen.lab": "f1"}
    with pytest.raises(UserError):
        parse_keymap("app.screen.jobs")
    app = make_app(Lab(tmp_path / "lab"), keymap=keymap)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        assert type(app.screen).__name__ == "JobsScreen"
        await pilot.press("f1")
        assert type(app.screen).__name__ == "LabScreen"


# -- bad files in the lab ------------------------------------------------------------------


@run_async
async def test_damaged_and_spoiled_checkpoints_give_one_line_and_the_console_goes_on(test_lab: Lab) -> None:
    """Opening a truncated checkpoint says so in one line; a checkpoint holding NaN refuses to be
    a swap donor in one line; after each error the console still works."""
    import shutil

    import h5py

    from reuse_console.tui.screens.modals import ErrorModal

    folder = test_lab.root / "checkpoints"
    good = folder / "unet-ae.h5"
    (folder / "cut.h5").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    shutil.copy(good, folder / "spoiled.h5")
    with h5py.File(folder / "spoiled.h5", "r+") as f:
        ds = f["params/enc1.bn1/running_var"]
        data = ds[()]
        data[0] = float("nan")
        ds[...] = data
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#table-checkpoints")
        await wait_until(pilot, lambda: table.row_count == 8, 20, "checkpoints listed")
        app.open_layers("cut")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), 20, "the error for the cut file")
        message = str(app.screen.message)
        assert "cut.h5" in message and "\n" not in message and "Traceback" not in message
        assert app.screen.detail == ""  # a user error: no traceback below it
        await pilot.press("escape")
        app.open_swap("unet-seg", "spoiled")  # the swap lab loads (and checks) both models at once
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), 60, "the error for the NaN donor")
        message = str(app.screen.message)
        assert "NaN" in message or "not finite" in message, message
        assert "\n" not in message and app.screen.detail == ""
        await pilot.press("escape")
        await pilot.press("1")
        assert type(app.screen).__name__ == "LabScreen"
