"""Resuming a stopped job: the command that continues it, written out by hand for each kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reuse_console.engine.core.events import Started
from reuse_console.engine.jobs.choices import DonorChoice, PlanChoice, donor_fits, plan_fits, run_arch
from reuse_console.engine.jobs.control import Job
from reuse_console.engine.jobs.resume import grid_path, option, resume_argv
from reuse_console.store.errors import UserError


def _job(tmp_path: Path, argv: list[str], status: str = "cancelled", events: list[dict] | None = None) -> Job:
    events_path = tmp_path / "j.events.jsonl"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in events or []))
    return Job("j", argv, 1, "", status, None, events_path, tmp_path / "j.log", cwd=str(tmp_path / "work"))


def test_a_named_training_run_resumes_by_name_with_its_device_options(tmp_path: Path) -> None:
    argv = ["train", "--data", "acdc", "--init", "ae", "--plan", "p", "--mode", "freeze", "--name", "r1"]
    argv += ["--device", "cpu", "--precision", "bf16", "--threads", "2"]
    assert resume_argv(_job(tmp_path, argv)) == [
        "train",
        "--resume",
        "r1",
        "--device",
        "cpu",
        "--precision",
        "bf16",
        "--threads",
        "2",
    ]


def test_an_unnamed_training_run_resumes_by_the_name_it_reported(tmp_path: Path) -> None:
    started = Started("train unet-seg-acdc-2", 10, "steps", {"run": "unet-seg-acdc-2"}).to_dict()
    job = _job(tmp_path, ["train", "--data", "acdc", "--threads=1"], "lost", [started])
    assert resume_argv(job) == ["train", "--resume", "unet-seg-acdc-2", "--threads", "1"]
    with pytest.raises(UserError, match="before its run was named"):
        resume_argv(_job(tmp_path, ["train", "--data", "acdc"], "failed", []))


def test_scans_and_grids_resume_with_their_own_options(tmp_path: Path) -> None:
    scan = ["scan", "a", "b", "--data", "acdc", "--kinds", "RM,RV"]
    assert resume_argv(_job(tmp_path, scan)) == [*scan, "--resume"]
    grid = ["grid", "studies/x.toml", "--name", "e1"]
    assert resume_argv(_job(tmp_path, grid, "lost")) == [*grid, "--resume"]
    assert resume_argv(_job(tmp_path, [*grid, "--resume"])) == [*grid, "--resume"]  # not twice


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["align", "a", "--to", "b"], "cancelled", "cannot be resumed"),
        (["scan", "a", "b", "--data", "d"], "running", "still running"),
        (["scan", "a", "b", "--data", "d"], "finished", "nothing to resume"),
    ],
)
def test_what_cannot_be_resumed_says_why(tmp_path: Path, argv, status, message) -> None:
    with pytest.raises(UserError, match=message):
        resume_argv(_job(tmp_path, argv, status))


def test_a_grid_jobs_study_file_is_found_from_its_working_directory(tmp_path: Path) -> None:
    job = _job(tmp_path, ["grid", "--name", "e1", "--devices", "cuda:0", "studies/x.toml", "--resume"])
    assert grid_path(job) == tmp_path / "work" / "studies" / "x.toml"
    assert grid_path(_job(tmp_path, ["grid", "/abs/s.toml"])) == Path("/abs/s.toml")
    assert grid_path(_job(tmp_path, ["scan", "a", "b"])) is None
    assert option(["grid", "s", "--name", "a", "--name=b"], "--name") == "b"


def test_donors_and_plans_that_fit_what_was_typed() -> None:
    small = DonorChoice("small", "unet", {"base_width": 4})
    wide = DonorChoice("wide", "unet", {"base_width": 8})
    psp = DonorChoice("psp", "pspnet", {})
    donors = [small, wide, psp]
    assert [d.id for d in donors if donor_fits(d, "", {})] == ["small", "wide", "psp"]
    assert [d.id for d in donors if donor_fits(d, "unet", {})] == ["small", "wide"]
    assert [d.id for d in donors if donor_fits(d, "unet", {"base_width": 8})] == ["wide"]
    assert [d.id for d in donors if donor_fits(d, "", {"base_width": 4})] == ["small", "psp"]
    plans = [PlanChoice("pu", "unet"), PlanChoice("pp", "pspnet"), PlanChoice("any", "")]
    assert [p.id for p in plans if plan_fits(p, run_arch("", psp, "unet"))] == ["pp", "any"]
    assert [p.id for p in plans if plan_fits(p, run_arch("", None, "unet"))] == ["pu", "any"]
