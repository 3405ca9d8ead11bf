"""The job forms against the CLI: a transfer run, a grid built in the form, resume and restart.

Each form's command is checked against a command line written by hand, and what the job makes
against what the CLI makes from that hand-written line (or against the donor it reused).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import tomllib
import torch
from console_lab import console_lab
from rich.console import Console
from test_app import make_app, plain, run_async, wait_until

from reuse_console.store.lab import Lab


@pytest.fixture
def test_lab(tmp_path: Path) -> Lab:
    return console_lab(tmp_path / "lab")


KEEP = ["--device", "cpu", "--precision", "fp32", "--threads", "1"]


def _plan(lab: Lab, name: str = "p1") -> set[str]:
    """A plan reusing layers 1-9 of the console lab's UNets; returns its reused state-dict keys."""
    from reuse_console.engine.models.layers import LayerIndex
    from reuse_console.engine.models.registry import build_model, default_config
    from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe

    index = LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, base_width=4)), 1, 64)
    plan = ReusePlan(name, "unet", universe(index)).with_reusable(
        {(layer.name, k) for layer in index for k in layer.kinds if layer.index and layer.index < 10}
    )
    save_plan(lab, plan)
    return {t.key for t in plan.tensors if t.reusable}


async def _open(pilot, key: str, form: str) -> object:
    await pilot.press("5", key)
    await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == form, 20, f"the {form}")
    return pilot.app.screen


async def _set(pilot, form, **values: str) -> None:
    for wid, value in values.items():
        form.query_one(f"#f-{wid}").value = value
        await pilot.pause()


TRANSFER = ["train", "--data", "acdc", "--init", "unet-ae", "--plan", "p1", "--mode", "freeze", "--task", "seg"]
TRANSFER += ["--epochs", "1", "--batch", "8", "--lr", "0.001", "--seed", "0"]


@run_async
async def test_a_restarted_job_fills_its_form_with_its_own_command(test_lab: Lab) -> None:
    """Each form, filled from a command line written by hand, builds that same command line."""
    from reuse_console.tui.screens.form_choices import make_form, read_choices

    _plan(test_lab)
    commands = [
        [*TRANSFER, "--name", "r1", *KEEP],
        ["scan", "unet-seg", "unet-ae", "--data", "acdc", "--layers", "1-5", "--kinds", "bn", "--alphas", "1"]
        + ["--precision", "fp32", "--device", "cpu", "--threads", "1", "--name", "s1"],
        ["align", "unet-ae", "--to", "unet-seg", "--data", "acdc", "--method", "activations", "--device", "cpu"]
        + ["--threads", "1"],
        ["cka", "unet-seg", "unet-ae", "unet-seg.init", "--data", "acdc", "--features", "pixels", "--pixels", "16"]
        + ["--device", "auto", "--precision", "fp32", "--threads", "2"],
        ["grid", "examples/study.toml", "--name", "e1", "--device", "cpu", "--precision", "fp32", "--threads", "1"],
    ]
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        for argv in commands:
            form = make_form(argv[0], read_choices(test_lab, argv[0]), test_lab, argv)
            app.push_screen(form)
            await wait_until(pilot, lambda f=form: app.screen is f and f.is_mounted, 10, argv[0])
            await pilot.pause()
            assert form.argv() == argv
            await pilot.press("escape")


@run_async
async def test_the_training_form_offers_donors_and_plans_that_fit(test_lab: Lab) -> None:
    """Typing another architecture hides the UNet donors and plans; the donor's options are what
    a blank arch config gives (shown, not written on the command line)."""
    _plan(test_lab)
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open(pilot, "t", "TrainForm")
        donors = {v for _, v in form.query_one("#f-init")._options if isinstance(v, str)}
        assert {"unet-seg", "unet-ae"} <= donors and not any(d.endswith((".init", ".last")) for d in donors)
        await _set(pilot, form, init="unet-ae", plan="p1", mode="freeze")
        shown = plain(form.query_one("#form-command"))
        assert "--init unet-ae --plan p1 --mode freeze" in shown and "--arch" not in shown
        assert '"base_width": 4' in form.query_one("#f-arch_config").placeholder
        await _set(pilot, form, arch_config='{"base_width": 8}')  # no UNet of width 8 in the lab
        assert form.query_one("#f-init").value is form.query_one("#f-init").NULL
        assert "--init" not in plain(form.query_one("#form-command"))
        await _set(pilot, form, arch_config="", arch="pspnet")
        assert {v for _, v in form.query_one("#f-plan")._options if isinstance(v, str)} == set()  # p1 is a UNet plan
        await _set(pilot, form, arch="", plan="p1")
        assert "a transfer run needs both" in plain(form.query_one("#form-command"))


@pytest.mark.slow
@run_async
async def test_a_transfer_job_from_the_form_is_the_clis_run(test_lab: Lab, cli) -> None:
    """The form's command equals the hand-written one; its job trains the same model (bit for bit,
    CPU) as the CLI given that line, and the frozen plan tensors are the donor's."""
    from reuse_console.store.checkpoints import read_checkpoint

    reused = _plan(test_lab)
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open(pilot, "t", "TrainForm")
        await _set(pilot, form, init="unet-ae", plan="p1", mode="freeze", epochs="1", batch="8", name="tr1")
        await _set(pilot, form, device="cpu")
        assert form.argv() == [*TRANSFER, "--name", "tr1", "--device", "cpu", "--precision", "fp32", "--threads", "1"]
        await pilot.press("ctrl+s")
        jobs = app.screen
        await wait_until(pilot, lambda: jobs.snapshot is not None and jobs.snapshot.status == "finished", 240, "job")
        assert jobs.snapshot.result == "tr1"
    code, _, err = cli("--lab", str(test_lab.root), "train", *TRANSFER[1:], "--name", "cli1", *KEEP)
    assert code == 0, err
    ours, meta = read_checkpoint(test_lab.path("checkpoints", "tr1.last"))
    theirs, _ = read_checkpoint(test_lab.path("checkpoints", "cli1.last"))
    donor, _ = read_checkpoint(test_lab.path("checkpoints", "unet-ae"))
    assert meta.arch == "unet" and meta.arch_config["base_width"] == 4  # the donor's, not the default
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert reused and all(torch.equal(ours[k], donor[k]) for k in reused)
    assert not all(torch.equal(ours[k], donor[k]) for k in ours)  # the rest trained


@pytest.mark.slow
@run_async
async def test_a_grid_built_in_the_form_runs_and_shows_its_cells(test_lab: Lab) -> None:
    from reuse_console.engine.grids.study import load_study

    _plan(test_lab)
    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open(pilot, "g", "GridForm")
        await _set(pilot, form, name="g1", target="acdc", seeds="1", freeze="", donor1="unet-ae", plan1="p1")
        await _set(pilot, form, epochs="1", batch="8", device="cpu")
        path = test_lab.root / "studies" / "g1.toml"
        assert form.argv() == ["grid", str(path), "--device", "cpu", "--precision", "fp32", "--threads", "1"]
        await pilot.press("ctrl+s")
        jobs = app.screen
        await wait_until(pilot, lambda: jobs.snapshot is not None and jobs.snapshot.status == "finished", 300, "grid")
        await wait_until(pilot, lambda: [c.state for c in jobs.snapshot.grid] == ["done", "done"], 20, "cells")
        view = jobs.query_one("#job-view")
        console = Console(width=view.size.width, file=io.StringIO(), record=True)
        console.print(view.content)
        shown = console.export_text()
    assert [c.name for c in load_study(path).cells()] == ["random-nall-s0", "unet-ae-finetune-nall-s0"]
    assert tomllib.loads(path.read_text())["train"]["arch_config"] == {"base_width": 4, "conv_bias": True}
    assert test_lab.exists("experiments", "g1")
    assert "cells 2 done" in shown and "unet-ae-finetune-nall-s0" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80


@pytest.mark.slow
@run_async
async def test_a_cancelled_training_job_resumes_with_one_key(test_lab: Lab) -> None:
    from reuse_console.engine.jobs.cancel import cancel_job
    from reuse_console.engine.jobs.control import get_job
    from reuse_console.store.checkpoints import read_meta

    app = make_app(test_lab)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await _open(pilot, "t", "TrainForm")
        await _set(pilot, form, arch_config='{"base_width": 4}', epochs="12", batch="8", name="long", device="cpu")
        await pilot.press("ctrl+s")
        jobs = app.screen
        await wait_until(pilot, lambda: jobs.snapshot is not None and len(jobs.snapshot.epoch_rows) >= 1, 240, "epoch")
        first = jobs.snapshot.id
        cancel_job(test_lab, first)
        await wait_until(pilot, lambda: jobs.snapshot.status == "cancelled", 30, "cancel")
        done_before = read_meta(test_lab.path("checkpoints", "long.last")).epoch
        await pilot.press("r")
        await wait_until(pilot, lambda: jobs.snapshot.id != first, 30, "the resumed job")
        resumed = get_job(test_lab, jobs.snapshot.id)
        assert resumed.argv == ["train", "--resume", "long", *KEEP]
        await wait_until(pilot, lambda: jobs.snapshot.status == "finished", 600, "the resumed job to finish")
    assert 1 <= done_before < 12
    assert read_meta(test_lab.path("checkpoints", "long.last")).epoch == 12
