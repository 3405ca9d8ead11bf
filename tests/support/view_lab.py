"""A small lab for the result views' tests: a grid's experiment (two seeds, RMSE to a reference),
a reuse plan with Dice-drop evidence, an RMSE comparison of three models and a finished run.

Everything is written with the store and engine writers from fixed numbers (no training), so it
builds in well under a second and its numbers never move (the snapshots compare pixels).
"""

from __future__ import annotations

import numpy as np

from reuse_console.store.lab import Lab

CLASSES = ["background", "RV", "MYO", "LV"]
SOURCES = (("random", "scratch"), ("auto", "freeze"), ("auto", "finetune"), ("seg", "finetune"))


def write_experiment(lab: Lab, name: str = "grid") -> None:
    """Four rows (random, auto freeze, auto finetune, seg finetune) x 2 seeds, 3 val subjects."""
    from reuse_console.engine.grids.experiment import CellRecord, Experiment
    from reuse_console.engine.grids.experiment import write_experiment as write

    rng = np.random.default_rng(0)
    cells = []
    for r, (source, mode) in enumerate(SOURCES):
        for seed in (0, 1):
            dice = np.clip(0.55 + 0.1 * r - 0.2 * (mode == "freeze") + rng.normal(0, 0.03, (3, 4)), 0, 1)
            cell = f"{source}-{mode}-n4-s{seed}" if source != "random" else f"random-n4-s{seed}"
            cells.append(CellRecord(cell, source, mode, 4, seed, f"{name}.{cell}", dice))
    layers = [str(i) for i in range(1, 9)]
    exp = Experiment(
        name,
        "acdc",
        CLASSES,
        [True] * 4,
        ["p1", "p2", "p3"],
        cells,
        random_source="random",
        reference="ref",
        rmse_layers=layers,
        rmse_index=list(range(1, 9)),
        rmse_kinds=["RM", "RV", "W"],
        rmse=np.abs(rng.normal(0.5, 0.2, (len(cells), 8, 3))),
    )
    write(lab.path("experiments", name), exp)


def write_plan(lab: Lab, name: str = "plan-a") -> None:
    """Layers 1-4 with RM, RV, W (BN + conv) and an unnumbered head conv with W, B; a drop each."""
    from reuse_console.engine.reuse.plans import PlanTensor, ReusePlan
    from reuse_console.engine.reuse.plans import write_plan as write

    tensors = []
    leaf = {"RM": "bn.running_mean", "RV": "bn.running_var", "W": "conv.weight", "B": "conv.bias"}
    drops = iter([0.001, 0.2, 0.03, 0.0, 0.07, 0.5, 0.012, 0.004, 0.3, 0.02, 0.01, 0.09, 0.6, 0.0])
    for index in (1, 2, 3, 4, None):
        layer = str(index) if index is not None else "head"
        for kind in ("RM", "RV", "W") if index is not None else ("W", "B"):
            drop = next(drops)
            numel = 8 if kind in ("RM", "RV", "B") else 8 * 8 * 9
            key = f"l{layer}.{leaf[kind]}"
            tensors.append(PlanTensor(layer, index, kind, key, numel, drop <= 0.05, drop, None))
    plan = ReusePlan(
        name,
        "unet",
        tensors,
        criteria={"max_dice_drop": 0.05, "max_rmse": None, "combine": "and"},
        provenance={"source": "inferred", "scan": "s", "recipient": "seg", "donor": "ae", "data": "acdc"},
    )
    write(lab.path("plans", name), plan)


def write_comparison(lab: Lab, name: str = "cmp3") -> None:
    """RMSE of three models (three pairs), six layers (the last unnumbered), kinds RM and W."""
    from reuse_console.engine.compare.rmse import Comparison
    from reuse_console.engine.compare.rmse import write_comparison as write

    rng = np.random.default_rng(1)
    pairs = [(0, 1), (0, 2), (1, 2)]
    rms = np.abs(rng.normal(1.0, 0.3, (3, 6, 2)))
    rmse = np.abs(rng.normal(0.4, 0.2, (3, 6, 2)))
    rmse[:, 5, 0] = np.nan  # the head has no BN
    relative = rmse / np.stack([rms[a] for a, _ in pairs])
    comp = Comparison(
        ["m-a", "m-b", "m-c"],
        [*map(str, range(1, 6)), "head"],
        [1, 2, 3, 4, 5, None],
        ["RM", "W"],
        pairs,
        rmse,
        relative,
        rms,
        name,
    )
    write(lab.path("comparisons", name), comp, {"command": "rmse m-a m-b m-c"})


def write_run(lab: Lab, name: str = "run-a") -> None:
    """A finished 4-epoch segmentation run with 3 steps per epoch."""
    from reuse_console.store.runs import RunWriter

    columns = [
        "epoch",
        "train_loss",
        "val_dice_fg",
        *(f"val_dice_{c}" for c in CLASSES),
        "seconds",
        "images_per_s",
        "best",
    ]
    meta = {
        "arch": "unet",
        "task": "seg",
        "data": "acdc",
        "epochs": 4,
        "batch": 8,
        "lr": 0.001,
        "seed": 0,
        "classes": CLASSES,
        "present": [True] * 4,
        "checkpoint": "model-a",
    }
    with RunWriter.create(lab.path("runs", name), meta=meta, epoch_columns=columns) as run:
        for epoch in range(1, 5):
            for step in range(3):
                run.append_step(epoch, (epoch - 1) * 3 + step + 1, 2.0 / (epoch + step * 0.3), 100.0)
            values = {
                "epoch": epoch,
                "train_loss": 2.0 / epoch,
                "val_dice_fg": 0.2 * epoch,
                "seconds": 1.5,
                "images_per_s": 100.0,
                "best": 1.0,
            }
            values.update({f"val_dice_{c}": 0.1 * epoch + 0.05 * i for i, c in enumerate(CLASSES)})
            run.append_epoch(values)
        run.finish("finished")


def view_lab(root) -> Lab:
    lab = Lab(root)
    write_experiment(lab)
    write_plan(lab)
    write_comparison(lab)
    write_run(lab)
    return lab
