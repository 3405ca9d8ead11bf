"""Grid controls: meanvar draws by their moments, reinit keeps the run's initial values, a selffer of
every tensor frozen is its donor, and every control row gets its difference to random init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toydata import write_toy

from reuse_console.engine.evaluation.evaluate import evaluate_checkpoint
from reuse_console.engine.grids.grid import run_grid
from reuse_console.engine.grids.study import Source, Study, TrainSettings, load_study
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.reuse.controls import VAR_FLOOR, meanvar
from reuse_console.engine.reuse.plans import ReusePlan, save_plan, universe
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.errors import UserError

TINY = {"base_width": 4}


def test_meanvar_matches_each_tensors_mean_and_std() -> None:
    g = torch.Generator().manual_seed(0)
    state = {
        "conv.weight": torch.randn(8, 4, 3, 3, generator=g) * 0.3 + 0.1,
        "bn.running_var": torch.rand(8, generator=g) + 0.5,
        "bn.running_mean": torch.randn(8, generator=g),
        "one.bias": torch.tensor([0.7]),
    }
    drawn = meanvar(state, seed=3)
    for key in ("conv.weight", "bn.running_mean", "bn.running_var"):
        assert float(drawn[key].mean()) == pytest.approx(float(state[key].mean()), rel=1e-3, abs=1e-6), key
        assert float(drawn[key].std()) == pytest.approx(float(state[key].std()), rel=1e-3), key
        assert not torch.allclose(drawn[key], state[key])
    assert torch.equal(drawn["one.bias"], state["one.bias"])  # one value: its mean, no spread
    assert torch.equal(meanvar(state, seed=3)["conv.weight"], drawn["conv.weight"])  # seeded
    per_channel = meanvar(state, seed=3, per_channel=True)["conv.weight"]
    want = state["conv.weight"].reshape(8, -1)
    got = per_channel.reshape(8, -1)
    np.testing.assert_allclose(got.mean(1).numpy(), want.mean(1).numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(got.std(1).numpy(), want.std(1).numpy(), rtol=1e-3)
    wide = meanvar({"bn.running_var": torch.tensor([0.01, 3.0, 0.02, 0.05])}, seed=1)["bn.running_var"]
    assert float(wide.min()) == pytest.approx(VAR_FLOOR)  # a variance is never drawn negative: floored


@pytest.fixture
def control_lab(lab):
    """Toy data, a seg donor trained on it (the selffer donor) and plans of layers 1-4 and of every tensor."""
    write_toy(lab)
    train(
        lab,
        TrainSpec(data="toy", arch_config=TINY, epochs=1, batch=4, name="donor", augment=False, seed=5),
        device="cpu",
    )
    index = LayerIndex.from_model(build_model("unet", default_config("unet", 1, 4, **TINY)), 1, 64)
    plan = ReusePlan("p", "unet", universe(index))
    save_plan(lab, plan.with_reusable({(x.name, k) for x in index for k in x.kinds if x.index and x.index < 5}))
    save_plan(
        lab, ReusePlan("all", "unet", universe(index)).with_reusable({(x.name, k) for x in index for k in x.kinds})
    )
    return lab


@pytest.mark.slow
def test_control_rows_of_a_grid(control_lab) -> None:
    lab = control_lab
    study = Study(
        name="ctl",
        target="toy",
        sources=[
            Source("random"),
            Source("meanvar", "donor", "p", "meanvar"),
            Source("reinit", None, "p", "reinit"),
            Source("selffer", "donor", "all", "selffer"),
        ],
        modes=["freeze"],
        subjects=[2],
        seeds=[0, 1],
        train=TrainSettings(arch_config=TINY, epochs=1, batch=4, augment=False),
    )
    exp = run_grid(lab, study, device="cpu")
    donor, _ = read_checkpoint(lab.path("checkpoints", "donor"))
    keys = [k for k in donor if k.startswith(("enc1.", "enc2."))]  # layers 1-4 are enc1, enc2
    for cell in exp.cells:
        after, _ = read_checkpoint(lab.path("checkpoints", cell.checkpoint))
        if cell.source == "reinit":  # frozen at the run's own initial values
            init, _ = read_checkpoint(lab.path("checkpoints", cell.checkpoint.removesuffix(".last") + ".init"))
            for key in keys:
                if not key.endswith("num_batches_tracked"):
                    assert torch.equal(after[key], init[key]), key
        if cell.source == "meanvar":  # frozen at a draw with the donor's moments
            for key in (k for k in keys if k.endswith("weight")):
                assert float(after[key].mean()) == pytest.approx(float(donor[key].mean()), rel=1e-3, abs=1e-6)
                assert float(after[key].std()) == pytest.approx(float(donor[key].std()), rel=1e-3)
    donor_dice = evaluate_checkpoint(lab, "donor", data="toy", device="cpu")["dice"]
    for cell in (c for c in exp.cells if c.source == "selffer"):  # every tensor frozen: the donor itself
        got = dict(zip(exp.classes, cell.dice.mean(axis=0)))
        assert got == pytest.approx(donor_dice, abs=0), cell.name
    rows = {r["source"]: r for r in exp.table_json()}
    assert set(rows) == {"random", "meanvar", "reinit", "selffer"}
    for name in ("meanvar", "reinit", "selffer"):
        assert rows[name]["diff"]["fg"] is not None and rows[name]["diff_ci95"]["fg"] is not None


def test_bad_control_sources_are_one_line(tmp_path) -> None:
    cases = {
        'name = "x"\ncontrol = "shuffle"\ndonor = "d"\nplan = "p"': "control must be one of",
        'name = "x"\ncontrol = "reinit"\ndonor = "d"\nplan = "p"': "control reinit takes a plan and no donor",
        'name = "x"\ncontrol = "meanvar"\nplan = "p"': "needs both donor and plan",
    }
    for source, message in cases.items():
        path = tmp_path / "s.toml"
        path.write_text(f'target = "t"\n[[sources]]\n{source}\n')
        with pytest.raises(UserError, match=message) as err:
            load_study(path)
        assert "\n" not in str(err.value)


def test_a_selffer_donor_must_be_a_seg_model_of_the_target(control_lab) -> None:
    lab = control_lab
    train(
        lab,
        TrainSpec(data="toy", arch_config=TINY, epochs=1, batch=4, name="ae", task="ae", augment=False),
        device="cpu",
    )
    study = Study(
        name="bad", target="toy", sources=[Source("s", "ae", "p", "selffer")], modes=["freeze"], subjects=[2], seeds=[0]
    )
    with pytest.raises(UserError, match="a selffer donor is a seg model trained on the target"):
        run_grid(lab, study, device="cpu")
