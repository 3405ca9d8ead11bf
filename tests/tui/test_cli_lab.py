"""`ls` and `show` as a new user meets them: at 80 columns, ids whole, each object's results as a table.

The objects are written with the engine's writers from numbers chosen here, so every value the
tables show is checked against a hand computation (or, for a trained run, against the run file
read with h5py alone).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from rich.cells import cell_len
from toydata import write_toy

from reuse_console.engine.compare.rmse import Comparison, write_comparison
from reuse_console.engine.grids.experiment import CellRecord, Experiment, write_experiment
from reuse_console.engine.reuse.plans import PlanTensor, ReusePlan, write_plan
from reuse_console.engine.swaps.scan_store import write_scan
from reuse_console.engine.swaps.variants import ScanResult, Variant

CLASSES = ["background", "RV", "MYO", "LV"]
TINY = ["--arch-config", '{"base_width": 4}', "--batch", "4", "--device", "cpu", "--progress", "none"]
LONG_ID = "acdc-reuse.seg2seg-freeze-n4-s0.last"  # a grid cell's last checkpoint: the longest ids a lab has


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's stdout as an 80-column terminal (COLUMNS=80, read when it prints)."""
    from reuse_console.tui.output import stdout

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(stdout, "_width", None)


def _variant(layer: str, kind: str, key: str) -> Variant:
    return Variant(layer, kind, 1.0, (key,), int(layer), (key.rpartition(".")[0],))


def write_hand_scan(lab) -> None:
    """Two subjects; baseline Dice 0.99 / 0.9 / 0.8 / 0.7 (fg mean 0.8); swapping 1 W costs MYO 0.3."""
    variants = [
        _variant("1", "RM", "enc1.bn1.running_mean"),
        _variant("1", "W", "enc1.conv1.weight"),
        _variant("2", "RM", "enc1.bn2.running_mean"),
    ]
    base = np.array([[0.99, 0.9, 0.8, 0.7], [0.99, 0.9, 0.8, 0.7]])
    dice = np.repeat(base[None], 3, axis=0)
    dice[1, :, 2] -= 0.3  # 1 W: MYO 0.8 -> 0.5 for both subjects
    dice[2, 0, 3] -= 0.2  # 2 RM: LV of one subject 0.7 -> 0.5, mean LV 0.6
    result = ScanResult("sc", "seg", "ae", "toy", CLASSES, [True] * 4, ["p1", "p2"], base, variants, dice)
    write_scan(lab.path("scans", "sc"), result)


def write_hand_objects(lab) -> None:
    """A data set, a scan, a one-variant swap, a plan, a comparison and an experiment."""
    write_toy(lab)
    write_hand_scan(lab)
    swap = Variant("1-2", "RM,RV", 1.0, ("enc1.bn1.running_mean", "enc1.bn1.running_var"), None, ("enc1.bn1",))
    base = np.array([[0.99, 0.9, 0.8, 0.7]])
    swapped = np.array([[[0.98, 0.6, 0.8, 0.7]]])
    options = {"swap": {"layers": ["1", "2"], "kinds": ["RM", "RV"]}}
    result = ScanResult("sw", "seg", "ae", "toy", CLASSES, [True] * 4, ["p1"], base, [swap], swapped, options=options)
    write_scan(lab.path("scans", "sw"), result)
    tensors = [
        PlanTensor("1", 1, "RM", "enc1.bn1.running_mean", 4, False, 0.2),
        PlanTensor("1", 1, "W", "enc1.conv1.weight", 36, True, 0.01),
        PlanTensor("6", 6, "W", "enc3.conv2.weight", 144, False, 0.1),
        PlanTensor("17", 17, "RM", "dec1.bn1.running_mean", 4, False, 0.07),
        PlanTensor("17", 17, "W", "dec1.conv1.weight", 144, True, 0.0),
        PlanTensor("head", None, "W", "head.weight", 16, True, -0.01),
    ]
    write_plan(lab.path("plans", "pl"), ReusePlan("pl", "unet", tensors, {"max_dice_drop": 0.05}))
    rmse = np.array([[[0.5, 0.25], [0.125, np.nan]]])  # 1 pair, layers 1 and head, kinds RM and W
    rms = np.array([[[0.5, 0.5], [0.25, np.nan]], [[0.4, 0.4], [0.2, np.nan]]])
    comp = Comparison(["seg", "ae"], ["1", "head"], [1, None], ["RM", "W"], [(0, 1)], rmse, rmse / rms[0], rms)
    write_comparison(lab.path("comparisons", "cmp"), comp)

    def cell(source: str, mode: str, seed: int, fg: float) -> CellRecord:
        return CellRecord(
            f"{source}-n2-s{seed}", source, mode, 2, seed, f"ex.{source}-n2-s{seed}", np.array([[0.9, fg, fg, fg]])
        )

    cells = [cell("random", "scratch", 0, 0.6), cell("random", "scratch", 1, 0.8)]
    cells += [cell("ae", "freeze", 0, 0.75), cell("ae", "freeze", 1, 0.85)]
    exp = Experiment("ex", "toy", CLASSES, [True] * 4, ["p1"], cells, random_source="random")
    write_experiment(lab.path("experiments", "ex"), exp)


def rows(out: str, first: str) -> list[list[str]]:
    """The whitespace-split lines of `out` whose first word is `first`."""
    return [line.split() for line in out.splitlines() if line.split()[:1] == [first]]


# -- show: one name, two objects ------------------------------------------------------------------


def test_show_of_a_trained_name_is_the_checkpoint_and_says_the_run_is_there(lab, cli, narrow) -> None:
    write_toy(lab)
    root = str(lab.root)
    code, _, err = cli("--lab", root, "train", "--data", "toy", "--epochs", "2", "--name", "m", *TINY)
    assert code == 0, err
    assert sorted(e.kind for e in lab.entries() if e.id == "m") == ["checkpoints", "runs"]

    code, out, err = cli("--lab", root, "show", "m")
    assert code == 0, err
    assert "m is also a run: `show runs/m`" in err
    assert out.splitlines()[0].startswith("checkpoint m")
    assert rows(out, "layers")[0][:2] == ["layers", "18"]  # the paper's UNet: 18 Conv+BN layers
    with h5py.File(lab.path("checkpoints", "m"), "r") as f:
        stored = json.loads(f.attrs["metrics"])
    assert rows(out, "MYO")[0][1] == f"{stored['dice']['MYO']:.3f}"

    code, out, err = cli("--lab", root, "show", "runs/m")
    assert code == 0 and "also" not in err
    with h5py.File(lab.path("runs", "m"), "r", swmr=True, libver="latest", locking=False) as f:
        epochs = f["epochs"][()]
    assert len(epochs) == 2
    for row in epochs:
        line = rows(out, f"{int(row['epoch'])}{'*' if row['best'] else ''}")[0]
        assert line[1] == f"{row['train_loss']:.4f}" and line[2] == f"{row['val_dice_fg']:.3f}"
    assert "status finished: 2 of 2 epochs" in out and "--resume" not in out

    code, out, _ = cli("--lab", root, "show", "m", "--json")
    data = json.loads(out)
    assert code == 0 and data["kind"] == "checkpoints" and data["layers"]["numbered"] == 18
    code, out, _ = cli("--lab", root, "show", "runs/m", "--json")
    data = json.loads(out)
    assert [e["train_loss"] for e in data["epochs"]] == pytest.approx(list(epochs["train_loss"]))


KILLED_RUN = textwrap.dedent(
    """
    import os, sys
    from reuse_console.store.runs import RunWriter
    meta = {"name": "k", "arch": "unet", "task": "seg", "data": "toy", "epochs": 5, "classes": ["background", "LV"]}
    w = RunWriter.create(sys.argv[1], epoch_columns=["epoch", "train_loss", "val_dice_fg"], meta=meta)
    w.append_epoch({"epoch": 1, "train_loss": 0.75, "val_dice_fg": 0.25})
    os._exit(0)  # killed: no final status
    """
)


def test_show_of_a_killed_run_says_how_to_resume_it(lab, cli, narrow) -> None:
    lab.folder("runs", create=True)
    subprocess.run([sys.executable, "-c", KILLED_RUN, str(lab.path("runs", "k"))], check=True)
    code, out, err = cli("--lab", str(lab.root), "show", "k")
    assert code == 0, err
    assert rows(out, "1")[0][1:3] == ["0.7500", "0.250"]
    assert "status lost: 1 of 5 epochs" in out
    assert "reuse-console train --resume k" in out


# -- show: every kind's results --------------------------------------------------------------------


def test_show_of_a_scan_prints_baseline_layer_by_kind_and_the_largest_drops(lab, cli, narrow) -> None:
    write_hand_scan(lab)
    code, out, err = cli("--lab", str(lab.root), "show", "sc")
    assert code == 0, err
    words = " ".join(out.split())  # the line wraps at 80 columns
    assert "baseline seg on toy: background 0.990 RV 0.900 MYO 0.800 LV 0.700 (fg mean 0.800)" in words
    # fg means: 1 RM unchanged 0.800; 1 W (0.9 + 0.5 + 0.7) / 3 = 0.700; 2 RM (0.9 + 0.8 + 0.6) / 3 = 0.767
    assert rows(out, "1")[0] == ["1", "0.800", "0.700"]
    assert rows(out, "2")[0] == ["2", "0.767"]
    header = next(line.split() for line in out.splitlines() if line.split()[:2] == ["layer", "RM"])
    assert header == ["layer", "RM", "W"]
    drops = [r for r in rows(out, "1") + rows(out, "2") if len(r) == 7]  # layer kind alpha RV MYO LV fg
    assert drops == [
        ["1", "W", "1", "+0.000", "-0.300", "+0.000", "-0.100"],
        ["2", "RM", "1", "+0.000", "+0.000", "-0.100", "-0.033"],
    ]
    assert max(cell_len(line) for line in out.splitlines()) <= 80

    code, out, _ = cli("--lab", str(lab.root), "show", "sc", "--json")
    data = json.loads(out)
    assert data["kind"] == "scans" and data["variants"][1]["delta"]["MYO"] == pytest.approx(-0.3)

    code, out, _ = cli("--lab", str(lab.root), "show", "sc", "--raw")
    assert code == 0 and "/baseline/dice" in out and "/variants/dice" in out and "2x4" in out
    code, out, _ = cli("--lab", str(lab.root), "show", "sc", "--raw", "--json")
    assert {d["path"] for d in json.loads(out)["datasets"]} >= {"/baseline/dice", "/variants/mean"}


def test_show_of_every_other_kind_prints_its_table(lab, cli, narrow) -> None:
    write_hand_objects(lab)
    root = str(lab.root)

    def show(ref: str) -> str:
        code, out, err = cli("--lab", root, "show", ref)
        assert code == 0, err
        assert max(cell_len(line) for line in out.splitlines()) <= 80, out
        return out

    out = show("sw")  # a stored swap: Dice per class before and after
    assert rows(out, "RV")[0] == ["RV", "0.900", "0.600", "-0.300"]
    assert rows(out, "background")[0] == ["background", "0.990", "0.980", "-0.010"]

    out = show("pl")
    assert "not reusable: RM: 1,17; W: 6" in out
    assert "reused: 3 of 6 tensors (50.0%)" in out
    assert f"{100 * (36 + 144 + 16) / (4 + 36 + 144 + 4 + 144 + 16):.1f}% of parameter elements" in out
    assert rows(out, "17")[0] == ["17", "0.070", "x", "0.000"]

    out = show("cmp")
    assert rows(out, "1")[0] == ["1", "0.5", "(1.00)", "0.25", "(0.50)"]
    assert rows(out, "head")[0] == ["head", "0.125", "(0.50)"]

    out = show("ex")  # mean, sample std over the two seeds, difference to random init
    random, ae = rows(out, "random")[0], rows(out, "ae")[0]
    assert random[:5] == ["random", "scratch", "2", "2", "0.900"] and random[-1] == "0.700"
    assert ae[:4] == ["ae", "freeze", "2", "2"] and ae[-1] == "0.800"
    stds = [line.split() for line in out.splitlines() if line.strip().startswith("±")]
    assert stds[0][-1] == f"±{np.std([0.6, 0.8], ddof=1):.3f}" and stds[1][-1] == f"±{np.std([0.75, 0.85], ddof=1):.3f}"
    assert "(+.100)" in out

    out = show("toy")  # toydata: 4 subjects of 4 slices, the last one for validation
    assert rows(out, "train")[0][:3] == ["train", "3", "12"]
    assert rows(out, "val")[0] == ["val", "1", "4", "patient004"]
    assert "1.5 x 1.25 mm" in out and "64 x 64 px" in out

    code, out, _ = cli("--lab", root, "show", "toy", "--json")
    subjects = json.loads(out)["subjects"]
    assert [s["slices"] for s in subjects] == [4, 4, 4, 4] and subjects[-1]["split"] == "val"
    code, out, _ = cli("--lab", root, "show", "pl", "--json")
    assert json.loads(out)["not_reusable"] == "RM: 1,17; W: 6"
    code, out, _ = cli("--lab", root, "show", "ex", "--json")
    assert json.loads(out)["table"][1]["diff"]["fg"] == pytest.approx(0.1)


def test_show_of_an_id_in_two_kinds_shows_one_and_names_the_other(lab, cli) -> None:
    write_hand_scan(lab)
    write_plan(lab.path("plans", "sc"), ReusePlan("sc", "unet", [PlanTensor("1", 1, "RM", "a.b", 1, True)]))
    code, out, err = cli("--lab", str(lab.root), "show", "sc")
    assert code == 0 and "sc is also a plan: `show plans/sc`" in err and "baseline" in out
    code, out, _ = cli("--lab", str(lab.root), "show", "plans/sc")
    assert code == 0 and "not reusable: (none)" in out


# -- ls ----------------------------------------------------------------------------------------------


def test_ls_at_80_columns_is_one_line_per_object_with_every_id_whole(lab, cli, narrow) -> None:
    from swap_lab import make_checkpoint

    write_hand_objects(lab)
    make_checkpoint(lab, LONG_ID)
    entries = lab.entries()
    code, out, err = cli("--lab", str(lab.root), "ls")
    assert code == 0, err
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80, out
    assert f"{len(entries)} objects" in " ".join(err.split())  # the lab line: on stderr, stdout is the listing
    body = lines[1:]  # the header, then one line per object
    assert len(body) == len(entries)
    for line, e in zip(body, entries):
        words = line.split()
        assert words[:2] == [e.kind[:-1], e.id]
        assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d", " ".join(words[2:4]))
    by_id = {line.split()[1]: line for line in body}
    assert "4 subjects (1 val), 16 slices, 64 px" in by_id["toy"]
    assert "reuses 3/6 tensors (50%)" in by_id["pl"]

    code, out, _ = cli("--lab", str(lab.root), "ls", "--long")
    assert code == 0 and "subjects=4" in out and LONG_ID in out
