"""The demo: the whole study on the embedded phantom, from no data to the paper's figures.

phantom (acdc, t1, rvsc) -> import -> seg + ae UNet on acdc, seg + ae on t1, seg on rvsc, and a
seed-1 seg + ae pair on acdc (the selffer control's donor and the scan's second pair) -> scan of
the acdc seg vs ae models over both pairs, raw and recalibrated, and against the seg model's own
initial weights -> RMSE -> a reuse plan per donor -> a transfer grid with its controls (meanvar,
reinit, selffer) -> report. Every step is skipped when its result is already in the lab, so a
second run (or a run after a kill) only does what is missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reuse_console.engine.compare.rmse import run_rmse
from reuse_console.engine.core.device import pick_device
from reuse_console.engine.core.events import Finished, Message, Reporter, silent
from reuse_console.engine.core.names import init_name
from reuse_console.engine.data.importer import import_dataset
from reuse_console.engine.data.phantom import make_phantom
from reuse_console.engine.demo_similarity import ALIGNED_SCAN, OTHER_SCAN, similarity_steps
from reuse_console.engine.grids.experiment import read_experiment
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.study import Study
from reuse_console.engine.report.build import make_report
from reuse_console.engine.reuse.plan_lab import plan_from_lab
from reuse_console.engine.reuse.plans import TOLERANCE, load_plan, scan_dice_drops
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.scan_store import load_scan, progress_path
from reuse_console.engine.training.spec import last_name
from reuse_console.engine.training.train import TrainSpec, resume_training, train
from reuse_console.store.checkpoints import read_meta
from reuse_console.store.lab import Lab

if TYPE_CHECKING:  # the stages are imported where the demo reaches them
    from reuse_console.engine.grids.study import Study


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo flavour; `quick` fits CI (about 4 minutes on 2 CPU cores)."""

    subjects: dict[str, int]
    size: int
    base_width: int
    epochs: int
    grid_epochs: int
    grid_subjects: tuple[int, ...]
    grid_seeds: tuple[int, ...]
    lr: float = 2e-3
    max_dice_drop: float = 0.05
    batch: int = 16

    @classmethod
    def choose(cls, quick: bool) -> DemoConfig:
        if quick:
            return cls(
                subjects={"acdc": 10, "t1": 12, "rvsc": 10},
                size=64,
                base_width=8,
                epochs=8,
                grid_epochs=10,
                grid_subjects=(4,),
                grid_seeds=(0,),
            )
        return cls(
            subjects={"acdc": 30, "t1": 40, "rvsc": 24},
            size=64,
            base_width=8,
            epochs=15,
            grid_epochs=10,
            grid_subjects=(4, 20),
            grid_seeds=(0, 1),
        )


# (id, data set, task) of the models the study needs; the first two are the paper's pair.
MODELS: tuple[tuple[str, str, str], ...] = (
    ("unet-seg-acdc", "acdc", "seg"),
    ("unet-ae-acdc", "acdc", "ae"),
    ("unet-seg-t1", "t1", "seg"),
    ("unet-ae-t1", "t1", "ae"),
    ("unet-seg-rvsc", "rvsc", "seg"),
)
# Grid sources: (source name, donor checkpoint, plan id), as in the paper's Table 3.
DONORS: tuple[tuple[str, str, str], ...] = (
    ("auto2seg", "unet-ae-t1", "plan-t1-ae"),
    ("seg2seg", "unet-seg-t1", "plan-t1-seg"),
    ("rvsc2acdc", "unet-seg-rvsc", "plan-rvsc-seg"),
)
# (id, data set, task, seed): the selffer control's donor, a seg model of the target with another seed
SELFFER_MODEL = ("unet-seg-acdc-s1", "acdc", "seg", 1)
# its auto-encoder twin (same seed, so the same initial weights): the main scan's second pair
PAIR_MODEL = ("unet-ae-acdc-s1", "acdc", "ae", 1)
SEED_MODELS = (SELFFER_MODEL, PAIR_MODEL)
# Control rows of the grid: (source name, donor or None, plan, control), engine/reuse/controls.py
CONTROLS: tuple[tuple[str, str | None, str, str], ...] = (
    ("meanvar", "unet-ae-t1", "plan-t1-ae", "meanvar"),
    ("reinit", None, "plan-t1-ae", "reinit"),
    ("selffer", SELFFER_MODEL[0], "plan-t1-ae", "selffer"),
)
RECALIBRATE = 8  # the main scan also re-estimates norm statistics on this many training batches
SCAN = "scan-seg-vs-ae-acdc"
PAIR_SCAN = "scan-seg-vs-ae-acdc-s1"  # the same question for the seed-1 pair; one `--pairs` set with SCAN
PAIRS = f"{MODELS[0][0]}:{MODELS[1][0]},{SELFFER_MODEL[0]}:{PAIR_MODEL[0]}"
INIT_SCAN = "scan-seg-vs-init-acdc"
RMSE = "rmse-models"
EXPERIMENT = "acdc-reuse"


@dataclass
class DemoResult:
    """Ids of everything the demo made, for the summary the CLI prints."""

    lab: Path
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    scans: list[str] = field(default_factory=list)
    comparison: str = ""
    plans: list[str] = field(default_factory=list)
    experiment: str = ""
    figures: list[Path] = field(default_factory=list)
    similarity: list[str] = field(default_factory=list)  # per scan: predictor rho and AUC (demo_similarity)
    predictors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _stage(report: Reporter, text: str) -> None:
    report(Message(f"[demo] {text}"))


def make_datasets(lab: Lab, cfg: DemoConfig, sources: Path, seed: int, report: Reporter) -> list[str]:
    """Generate each phantom preset (NIfTI, ACDC layout) and import it at the demo's size."""
    done = []
    for preset, count in cfg.subjects.items():
        if not lab.path("datasets", preset).exists():
            folder = sources / f"phantom-{preset}"
            if not (folder.is_dir() and any(folder.iterdir())):
                _stage(report, f"phantom {preset}: {count} subjects -> {folder}")
                make_phantom(folder, preset=preset, subjects=count, layout="acdc", seed=seed, cine=False, report=report)
            _stage(report, f"import {preset} at {cfg.size} px")
            import_dataset(lab, folder, fmt="acdc", name=preset, size=cfg.size, seed=seed, report=report)
        done.append(preset)
    return done


def train_models(lab: Lab, cfg: DemoConfig, *, device: str, precision: str, report: Reporter) -> list[str]:
    """Train the study's five models (skipping finished ones, resuming interrupted ones)."""
    for name, data, task, seed in [(*m, 0) for m in MODELS] + list(SEED_MODELS):
        last = lab.path("checkpoints", last_name(name))
        if last.exists():
            meta = read_meta(last)
            if meta.epoch >= int(meta.extra.get("spec", {}).get("epochs", cfg.epochs)):
                continue  # finished (possibly by an earlier demo with other sizes): keep it
            _stage(report, f"resume {name}")
            resume_training(lab, name, device=device, report=report)
            continue
        for kind, obj in (("runs", name), ("checkpoints", name), ("checkpoints", init_name(name))):
            lab.path(kind, obj).unlink(missing_ok=True)  # killed before its first epoch ended: redo
        _stage(report, f"train {name} ({task} on {data}, {cfg.epochs} epochs)")
        spec = TrainSpec(
            data=data,
            arch="unet",
            arch_config={"base_width": cfg.base_width},
            task=task,
            epochs=cfg.epochs,
            batch=cfg.batch,
            lr=cfg.lr,
            seed=seed,
            name=name,
        )
        train(lab, spec, device=device, precision=precision, report=report)
    return [m[0] for m in MODELS] + [m[0] for m in SEED_MODELS]


def analyse(lab: Lab, cfg: DemoConfig, *, device: str, precision: str, report: Reporter) -> tuple[list[str], str]:
    """Experiment 1 (scan seg vs ae, also recalibrated), the re-initialisation scan, donor scans
    for the plans, and RMSE of all five models."""
    scans = []
    pairs: list[tuple[str, str, str, int | None, str | None]] = [
        (SCAN, MODELS[0][0], MODELS[1][0], RECALIBRATE, PAIRS),
        (PAIR_SCAN, SELFFER_MODEL[0], PAIR_MODEL[0], RECALIBRATE, PAIRS),
        (INIT_SCAN, "unet-seg-acdc", "init", None, None),
    ]
    pairs += [(f"scan-{donor}", "unet-seg-acdc", donor, None, None) for _, donor, _ in DONORS]
    for name, recipient, donor, recalibrate, pair_set in pairs:
        if not lab.path("scans", name).exists():
            _stage(report, f"scan {recipient} <- {donor}: every layer and kind")
            run_scan(
                lab,
                recipient,
                donor,
                "acdc",
                precision=precision,
                device=device,
                name=name,
                resume=progress_path(lab, name).exists(),
                recalibrate=recalibrate,
                pairs=pair_set,
                report=report,
            )
        scans.append(name)
    if not lab.path("comparisons", RMSE).exists():
        _stage(report, "RMSE of every pair of models")
        run_rmse(lab, [m[0] for m in MODELS], name=RMSE)
    return scans, RMSE


def make_plans(lab: Lab, cfg: DemoConfig, report: Reporter) -> list[str]:
    """One reuse plan per donor, from the scan of the acdc seg model with that donor's tensors."""
    plans = []
    for _, donor, plan in DONORS:
        if not lab.path("plans", plan).exists():
            made = plan_from_lab(lab, scan=f"scan-{donor}", max_dice_drop=cfg.max_dice_drop, name=plan)
            _stage(report, f"{plan}: not reusable {made.summary()['not_reusable'] or 'none'}")
        plans.append(plan)
    return plans


def study_for(cfg: DemoConfig) -> Study:
    """The demo's transfer grid: random init vs each donor, freeze and finetune (the paper's Table 3)."""
    return Study.from_dict(
        {
            "name": EXPERIMENT,
            "target": "acdc",
            "subjects": list(cfg.grid_subjects),
            "seeds": list(cfg.grid_seeds),
            "modes": ["freeze", "finetune"],
            "reference": "unet-seg-acdc",
            "train": {
                "arch": "unet",
                "arch_config": {"base_width": cfg.base_width},
                "epochs": cfg.grid_epochs,
                "batch": cfg.batch,
                "lr": cfg.lr,
                "augment": True,
            },
            "sources": [{"name": "random"}]
            + [{"name": source, "donor": donor, "plan": plan} for source, donor, plan in DONORS]
            + [
                {"name": source, "plan": plan, "control": control, **({"donor": donor} if donor else {})}
                for source, donor, plan, control in CONTROLS
            ],
        },
        where="demo study",
    )


def run_transfer_grid(lab: Lab, cfg: DemoConfig, *, device: str, precision: str, report: Reporter) -> str:
    """Train every cell of the demo study (resuming a grid a previous demo left unfinished)."""
    path = lab.path("experiments", EXPERIMENT)
    if path.exists() and read_experiment(path).status == "complete":
        return EXPERIMENT
    study = study_for(cfg)
    _stage(report, f"transfer grid: {len(study.cells())} cells")
    run_grid(lab, study, name=EXPERIMENT, resume=True, device=device, precision=precision, report=report)
    return EXPERIMENT


def make_report_files(lab: Lab, result: DemoResult, out: Path, report: Reporter) -> list[Path]:
    """The paper's figures and tables for the demo's scan, comparison, plans and experiment."""
    _stage(report, f"report -> {out}")
    refs = [SCAN, INIT_SCAN, OTHER_SCAN, ALIGNED_SCAN, result.comparison, *result.plans, result.experiment]
    refs += result.predictors
    return make_report(lab, refs, out, report=report)


def elapsed_since(start: float) -> float:
    return time.perf_counter() - start


def run_demo(
    lab: Lab,
    *,
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    precision: str | None = None,
    figures: Path | None = None,
    report: Reporter = silent,
) -> DemoResult:
    """Run the whole demo into `lab`; returns the ids it made. Safe to run again."""
    start = time.perf_counter()
    cfg = DemoConfig.choose(quick)
    dev = pick_device(device)
    precision = precision or ("bf16" if dev.type in ("cpu", "cuda") else "fp32")
    result = DemoResult(lab=lab.root)
    lab.root.mkdir(parents=True, exist_ok=True)
    result.datasets = make_datasets(lab, cfg, lab.root / "sources", seed, report)
    result.models = train_models(lab, cfg, device=device, precision=precision, report=report)
    result.scans, result.comparison = analyse(lab, cfg, device=device, precision="fp32", report=report)
    found = similarity_steps(lab, device=device, report=report)
    result.similarity, result.predictors = found.lines(), [f["predictor"] for f in found.scans.values()]
    result.scans += [OTHER_SCAN, ALIGNED_SCAN]
    result.plans = make_plans(lab, cfg, report)
    result.experiment = run_transfer_grid(lab, cfg, device=device, precision=precision, report=report)
    result.figures = make_report_files(lab, result, figures or lab.root / "figures", report)
    result.seconds = elapsed_since(start)
    report(Finished(what="demo", result=result.experiment, seconds=result.seconds))
    return result


@dataclass(frozen=True)
class ControlFindings:
    """What the controls say about the demo's findings (numbers for the README's claims)."""

    rm_rv_drop: float  # mean foreground Dice drop of the RM/RV swaps of SCAN, raw
    rm_rv_drop_recalibrated: float  # the same with norm statistics re-estimated after each swap
    w_drop: float  # mean foreground Dice drop of the conv W swaps, raw
    w_drop_recalibrated: float  # and recalibrated
    plan: str
    reused: int  # tensors the plan reuses
    fine_at_init: int  # of those, the ones that cost at most the plan's drop when reset to init


def control_findings(lab: Lab, max_dice_drop: float = 0.05, plan_id: str = "plan-t1-ae") -> ControlFindings:
    """Read the controls' answers off the lab: recalibrated RM/RV swaps and the init scan."""
    scan = load_scan(lab, SCAN)

    def mean_drop(kinds: tuple[str, ...], recalibrated: bool) -> float:
        chosen = [i for i, v in enumerate(scan.variants) if v.kind in kinds and v.alpha == 1.0]
        if not chosen or (recalibrated and scan.recalibrated is None):
            return float("nan")
        base, means = scan.fg_means(recalibrated=recalibrated)
        return float(np.mean([base - means[i] for i in chosen]))

    rm_rv, w = ("RM", "RV"), ("W",)
    reset = scan_dice_drops(load_scan(lab, INIT_SCAN))
    plan = load_plan(lab, plan_id)
    keys = plan.keys()
    fine = sum(1 for k in keys if k in reset and reset[k] <= max_dice_drop + TOLERANCE)
    return ControlFindings(
        rm_rv_drop=mean_drop(rm_rv, False),
        rm_rv_drop_recalibrated=mean_drop(rm_rv, True),
        w_drop=mean_drop(w, False),
        w_drop_recalibrated=mean_drop(w, True),
        plan=plan_id,
        reused=len(keys),
        fine_at_init=fine,
    )


def summary(result: DemoResult) -> dict[str, Any]:
    """JSON-able summary of a demo run."""
    return {
        "lab": str(result.lab),
        "datasets": result.datasets,
        "models": result.models,
        "scans": result.scans,
        "comparison": result.comparison,
        "plans": result.plans,
        "experiment": result.experiment,
        "figures": [str(p) for p in result.figures],
        "similarity": result.similarity,
        "seconds": round(result.seconds, 1),
    }
