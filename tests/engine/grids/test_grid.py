"""Transfer grids: study files, the experiment table by hand, resume, RMSE, worker processes."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from toydata import write_toy

from reuse_console.engine.core.events import CellDone, Message
from reuse_console.engine.grids.cells import cell_id, cell_spec
from reuse_console.engine.grids.experiment import load_experiment
from reuse_console.engine.grids.grid import parse_devices, run_grid, same_study
from reuse_console.engine.grids.study import Source, Study, TrainSettings, load_study
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError

TINY = {"base_width": 4}
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "study.toml"


def _study(**kw) -> Study:
    base = dict(
        name="g",
        target="toy",
        sources=[Source("random"), Source("seg2seg", "donor", "p")],
        modes=["freeze", "finetune"],
        subjects=[2],
        seeds=[0, 1],
        train=TrainSettings(arch_config=TINY, epochs=1, batch=4, augment=False),
    )
    return Study(**{**base, **kw})


@pytest.fixture
def grid_lab(lab):
    """Toy data, a donor trained on it, and a plan reusing layers 1-9."""
    write_toy(lab)
    train(
        lab,
        TrainSpec(data="toy", arch_config=TINY, epochs=1, batch=4, name="donor", augment=False, seed=5),
        device="cpu",
    )
    index = LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, **TINY)), 1, 64)
    plan = ReusePlan("p", "unet", universe(index))
    save_plan(
        lab,
        plan.with_reusable(
            {(layer.name, k) for layer in index for k in layer.kinds if layer.index and layer.index < 10}
        ),
    )
    return lab


def test_example_study_parses_into_the_papers_grid() -> None:
    study = load_study(EXAMPLE)
    assert study.name == "acdc-reuse-paper" and study.target == "acdc" and study.reference == "unet-seg-acdc"
    assert [s.name for s in study.sources] == ["random", "auto2seg", "seg2seg", "rvsc2acdc"]
    assert study.seeds == [0, 1, 2] and study.subjects == [10, None]  # the paper's 10 and all
    cells = study.cells()
    # per subject count: random 3 seeds + 3 donors x 2 modes x 3 seeds = 21
    assert len(cells) == 42
    assert [c.name for c in cells[:5]] == [
        "random-n10-s0",
        "random-n10-s1",
        "random-n10-s2",
        "auto2seg-freeze-n10-s0",
        "auto2seg-freeze-n10-s1",
    ]
    assert cells[-1].name == "rvsc2acdc-finetune-nall-s2"
    assert Study.from_dict(study.to_dict()) == study


def test_example_study_names_what_the_demo_makes() -> None:
    """examples/study.toml runs on `make demo`'s lab: its donors, plans, reference, data set and
    UNet config are the ones engine/demo.py makes, and 10 subjects fit the demo's training split."""
    from reuse_console.engine import demo

    study = load_study(EXAMPLE)
    donors = [(s.name, s.donor, s.plan) for s in study.sources if not s.random]
    assert donors == list(demo.DONORS)
    models = {name for name, _, _ in demo.MODELS}
    assert study.reference in models and study.target == demo.MODELS[0][1]
    full = demo.DemoConfig.choose(quick=False)
    assert study.train.arch_config == {"base_width": full.base_width}
    assert study.train.size is None  # the data set's size, the one the donors were trained at
    # import keeps 20% of the subjects for validation: the rest must hold the largest count
    assert max(n for n in study.subjects if n is not None) <= 0.8 * full.subjects[study.target]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('target = "t"\n[[sources]]\nname = "r"\nx = 1', "unknown field 'x'"),
        ('[[sources]]\nname = "r"', "`target`"),
        ('target = "t"', "sources"),
        ('target = "t"\nmodes = ["thaw"]\n[[sources]]\nname = "r"', "modes"),
        ('target = "t"\nseeds = 0\n[[sources]]\nname = "r"', "seeds"),
        ('target = "t"\nsubjects = [10, 10]\n[[sources]]\nname = "r"', "distinct"),
        ('target = "t"\n[[sources]]\nname = "a"\ndonor = "d"', "both donor and plan"),
        ('target = "t"\n[train]\nepochs = 0\n[[sources]]\nname = "r"', "epochs"),
        ('target = "t"\n[train]\nlayers = 3\n[[sources]]\nname = "r"', "unknown field 'layers'"),
        ('target = "t"\n[[sources]', "not valid TOML"),
    ],
)
def test_bad_study_files_name_the_field(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_study(path)


def test_grid_table_matches_the_cells_by_hand_and_rmse_is_per_layer(grid_lab) -> None:
    lab = grid_lab
    events: list = []
    run_grid(lab, _study(reference="donor"), device="cpu", report=events.append)
    exp = load_experiment(lab, "g")
    assert exp.status == "complete"
    names = [
        "random-n2-s0",
        "random-n2-s1",
        "seg2seg-freeze-n2-s0",
        "seg2seg-freeze-n2-s1",
        "seg2seg-finetune-n2-s0",
        "seg2seg-finetune-n2-s1",
    ]
    assert [c.name for c in exp.cells] == names
    assert [e.cell for e in events if isinstance(e, CellDone)] == names
    for c in exp.cells:  # each cell is a checkpoint named <experiment>.<cell>
        assert lab.path("checkpoints", f"g.{c.name}").exists() and c.checkpoint == f"g.{c.name}.last"
        assert c.dice.shape == (1, 4)  # one validation subject, four classes

    def cell_mean(name: str, cls: int) -> float:
        dice = next(c for c in exp.cells if c.name == name).dice
        return float(dice[:, cls].mean())

    table = {(r.source, r.mode): r for r in exp.table()}
    for (source, mode), row in table.items():
        head = source if mode == "scratch" else f"{source}-{mode}"
        for cls in range(4):
            seeds = [cell_mean(f"{head}-n2-s{s}", cls) for s in (0, 1)]
            assert row.mean[cls] == pytest.approx(statistics.mean(seeds))
            assert row.std[cls] == pytest.approx(statistics.stdev(seeds))
            if source != "random":
                rnd = statistics.mean(cell_mean(f"random-n2-s{s}", cls) for s in (0, 1))
                assert row.diff[cls] == pytest.approx(statistics.mean(seeds) - rnd)
        fg = [statistics.mean(cell_mean(f"{head}-n2-s{s}", c) for c in (1, 2, 3)) for s in (0, 1)]
        assert row.mean[-1] == pytest.approx(statistics.mean(fg))
    assert np.isnan(table[("random", "scratch")].diff).all()

    # RMSE of the frozen cell against the donor: 0 on frozen layers, by hand on a trained one
    ref, _ = read_checkpoint(lab.path("checkpoints", "donor"))
    k = names.index("seg2seg-freeze-n2-s0")
    cell, _ = read_checkpoint(lab.path("checkpoints", "g.seg2seg-freeze-n2-s0.last"))
    assert exp.rmse.shape == (6, len(exp.rmse_layers), 6)
    assert np.all(exp.rmse[k, :9] == 0.0)  # layers 1-9 were taken from the donor and frozen
    li, ki = exp.rmse_layers.index("12"), exp.rmse_kinds.index("W")
    index = LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, **TINY)), 1, 64)
    key = index.get("12").key("W")
    by_hand = torch.sqrt(((ref[key].double() - cell[key].double()) ** 2).mean()).item()
    assert exp.rmse[k, li, ki] == pytest.approx(by_hand)
    assert "± " in exp.table_markdown() and exp.table_csv().splitlines()[0].startswith("source,mode,subjects,seeds")

    with pytest.raises(UserError, match="--resume"):
        run_grid(lab, _study(reference="donor"), device="cpu")


def _interrupt_after_first_epoch(event) -> None:
    if type(event).__name__ == "EpochEnd":
        raise KeyboardInterrupt


def test_resume_trains_only_the_missing_cells(grid_lab) -> None:
    lab = grid_lab
    study = _study(modes=["freeze"], train=TrainSettings(arch_config=TINY, epochs=2, batch=4, augment=False))
    cells = {c.name: c for c in study.cells()}
    # an interrupted grid: two cells finished, one killed after its first epoch, one never started
    for name in ("random-n2-s0", "seg2seg-freeze-n2-s1"):
        train(lab, cell_spec(study, cells[name], cell_id("g", cells[name])), device="cpu")
    with pytest.raises(KeyboardInterrupt):
        c = cells["random-n2-s1"]
        train(lab, cell_spec(study, c, cell_id("g", c)), device="cpu", report=_interrupt_after_first_epoch)
    kept = {
        n: lab.path("checkpoints", f"g.{n}.last").stat().st_mtime_ns for n in ("random-n2-s0", "seg2seg-freeze-n2-s1")
    }

    with pytest.raises(UserError, match="--resume"):
        run_grid(lab, study, device="cpu")
    events: list = []
    exp = run_grid(lab, study, device="cpu", resume=True, report=events.append)
    texts = [e.text for e in events if isinstance(e, Message)]
    trained = sorted(t.split()[1] for t in texts if "to train)" in t)
    assert trained == ["random-n2-s1", "seg2seg-freeze-n2-s0"]
    assert sorted(t.split()[1] for t in texts if t.endswith("kept")) == ["random-n2-s0", "seg2seg-freeze-n2-s1"]
    assert any(t.startswith("resuming g.random-n2-s1 after epoch 1") for t in texts)
    for name, mtime in kept.items():
        assert lab.path("checkpoints", f"g.{name}.last").stat().st_mtime_ns == mtime  # not retrained
    assert all(c.done for c in exp.cells)

    # nothing left to train: a second resume only re-evaluates
    events.clear()
    run_grid(lab, study, device="cpu", resume=True, report=events.append)
    assert not [e for e in events if isinstance(e, Message) and "to train)" in e.text]
    # a changed study under the same name is refused
    with pytest.raises(UserError, match="different study"):
        run_grid(lab, _study(modes=["freeze"], seeds=[0, 1, 2]), device="cpu", resume=True)


def test_grid_refuses_missing_inputs(grid_lab) -> None:
    with pytest.raises(UserError, match="nope"):
        run_grid(grid_lab, _study(sources=[Source("a", "nope", "p")]), device="cpu")
    with pytest.raises(UserError, match="no plan"):
        run_grid(grid_lab, _study(sources=[Source("a", "donor", "nope")]), device="cpu")
    with pytest.raises(UserError, match="no data set|not found|no dataset"):
        run_grid(grid_lab, _study(target="nope"), device="cpu")
    assert not grid_lab.path("experiments", "g").exists()


def test_parse_devices() -> None:
    assert parse_devices(None) == [] and parse_devices("cpu,cpu") == ["cpu", "cpu"]
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            parse_devices("all")
        with pytest.raises(UserError, match="CUDA is not available"):
            parse_devices("cuda:0,cuda:1")
    with pytest.raises(UserError, match="empty item"):
        parse_devices("cpu,,cpu")


@pytest.mark.slow
def test_worker_processes_give_the_same_results_as_one_process(grid_lab) -> None:
    """Two spawned workers (on CPU here; one per GPU in use) train the same cells bit for bit."""
    lab = grid_lab
    one = run_grid(lab, _study(modes=["freeze"]), name="one", device="cpu")
    events: list = []
    two = run_grid(lab, _study(modes=["freeze"]), name="two", devices=["cpu", "cpu"], report=events.append)
    assert [c.name for c in two.cells] == [c.name for c in one.cells]
    for a, b in zip(one.cells, two.cells):
        assert np.array_equal(a.dice, b.dice), a.name
        sa, _ = read_checkpoint(lab.path("checkpoints", f"one.{a.name}.last"))
        sb, _ = read_checkpoint(lab.path("checkpoints", f"two.{b.name}.last"))
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len([e for e in events if isinstance(e, CellDone)]) == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_grid_on_every_gpu(grid_lab) -> None:
    devices = parse_devices("all")
    exp = run_grid(grid_lab, _study(modes=["freeze"]), devices=devices)
    assert all(c.done for c in exp.cells)


USER_MODEL_STUDY = """
target = "toy"
subjects = [2]
seeds = [0]
[train]
arch = "monai.networks.nets:DynUNet"
epochs = 1
batch = 4
augment = false
input = "repeat"
output = "out"
deep_supervision = true
depth = 8
[[sources]]
name = "random"
"""


def test_study_train_table_feeds_user_models_like_train_does(tmp_path) -> None:
    """[train]'s input, output, deep_supervision and depth reach every cell's training spec."""
    path = tmp_path / "user.toml"
    path.write_text(USER_MODEL_STUDY)
    study = load_study(path)
    (cell,) = study.cells()
    spec = cell_spec(study, cell, cell_id("user", cell))
    assert (spec.input, spec.output, spec.deep_supervision, spec.depth) == ("repeat", "out", True, 8)
    assert Study.from_dict(study.to_dict()) == study  # what a worker process rebuilds
    path.write_text(USER_MODEL_STUDY.replace('output = "out"\ndeep_supervision = true\ndepth = 8\n', ""))
    spec = cell_spec(load_study(path), cell, "x")
    assert (spec.input, spec.output, spec.deep_supervision, spec.depth) == ("repeat", None, False, None)


def test_recalibrate_reaches_the_donor_rows_only(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(
        'target = "t"\nmodes = ["freeze"]\n[train]\nrecalibrate = 4\n'
        '[[sources]]\nname = "ae"\ndonor = "d"\nplan = "p"\n[[sources]]\nname = "random"'
    )
    study = load_study(path)
    specs = {c.source.name: cell_spec(study, c, "x") for c in study.cells()}
    assert specs["ae"].recalibrate == 4 and specs["random"].recalibrate is None


def test_arch_config_as_json_writes_what_toml_cannot(tmp_path) -> None:
    """torchvision's factories need weights=None (no download), and TOML has no null."""
    path = tmp_path / "tv.toml"
    arch = "torchvision.models.segmentation:lraspp_mobilenet_v3_large"
    config = """'{"weights": null, "weights_backbone": null}'"""
    path.write_text(f'target = "t"\n[train]\narch = "{arch}"\narch_config = {config}\n[[sources]]\nname = "r"')
    study = load_study(path)
    cell = study.cells()[0]
    assert cell_spec(study, cell, "x").arch_config == {"weights": None, "weights_backbone": None}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('input = "rgb"', '[train]: input must be "as-is" or "repeat", got \'rgb\''),
        ('output = ""', "[train]: output must be the key of the model's dict output"),
        ("output = 3", "[train]: output must be the key"),
        ('deep_supervision = "yes"', "[train]: deep_supervision must be true or false, got 'yes'"),
        ("depth = 0", "[train]: depth must be a whole number of slices >= 1, got 0"),
        ("depth = 2.5", "[train]: depth must be a whole number"),
        ("depth = true", "[train]: depth must be a whole number"),
        ("arch_config = '{\"weights\": nul}'", "[train]: arch_config: not a JSON object (Expecting value"),
        ("arch_config = '[1]'", "[train]: arch_config: give a JSON object"),
        ("arch_config = 3", "[train]: arch_config must be a table"),
        ("recalibrate = 0", "[train]: recalibrate must be a whole number of batches >= 1, got 0"),
    ],
)
def test_bad_user_model_settings_are_one_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'target = "t"\n[train]\n{line}\n[[sources]]\nname = "r"')
    with pytest.raises(UserError) as err:
        load_study(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_experiment_stored_before_the_user_model_fields_still_resumes() -> None:
    study = _study()
    old = study.to_dict()
    for key in ("input", "output", "deep_supervision", "depth"):
        del old["train"][key]
    assert same_study(old, study)
    assert not same_study({**old, "seeds": [0]}, study)
    assert not same_study(old, _study(train=TrainSettings(arch_config=TINY, epochs=1, batch=4, input="repeat")))


DYNUNET_STUDY = """
target = "toy"
subjects = [2]
seeds = [0]
[train]
arch = "monai.networks.nets:DynUNet"
epochs = 1
batch = 4
augment = false
input = "repeat"
deep_supervision = true
[train.arch_config]
spatial_dims = 2
in_channels = 3
kernel_size = [3, 3, 3]
strides = [1, 2, 2]
upsample_kernel_size = [2, 2]
filters = [4, 8, 16]
deep_supervision = true
[[sources]]
name = "random"
"""


def test_a_grid_of_a_monai_model_fed_by_input_repeat_with_deep_supervision(lab, tmp_path) -> None:
    """A 3-channel DynUNet with deep-supervision heads: the study's input/deep_supervision make its
    cells train (TOML has no null, so torchvision's factories, which need weights_backbone = None,
    cannot be written in a study file)."""
    write_toy(lab)
    path = tmp_path / "dyn.toml"
    path.write_text(DYNUNET_STUDY.replace('input = "repeat"\n', ""))
    with pytest.raises(UserError, match="use --input repeat"):
        run_grid(lab, load_study(path), device="cpu")
    assert not lab.path("runs", "dyn.random-n2-s0").exists()
    path.write_text(DYNUNET_STUDY)
    exp = run_grid(lab, load_study(path), device="cpu")
    assert exp.status == "complete" and [c.done for c in exp.cells] == [True]
    assert exp.cells[0].dice.shape == (1, 4)
    _, meta = read_checkpoint(lab.path("checkpoints", "dyn.random-n2-s0.last"))
    adapter = meta.arch_config["adapter"]
    assert adapter["input"] == "repeat" and adapter["channels"] == 3 and adapter["deep_supervision"] is True
