"""A study's `empty = "ignore"`: the grid's cells are scored as `eval --empty ignore` (MONAI
ignore_empty=True), checked against MONAI on the cell model's own predictions; the key is kept out
of the stored study at its default, so experiments written before it resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from frames_lab import make_frames

from reuse_console.engine.grids.study import Source, Study, TrainSettings, load_study
from reuse_console.store.errors import UserError

monai_metrics = pytest.importorskip("monai.metrics")


def _onehot(x: np.ndarray) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(x.astype(np.int64)), 4).movedim(-1, 0)[None].float()


def test_study_key_is_checked_and_stored_only_when_not_the_default(tmp_path: Path) -> None:
    from reuse_console.engine.grids.grid import same_study

    base = 'target = "frames"\nseeds = 1\n{}[[sources]]\nname = "random"\n'
    path = tmp_path / "s.toml"
    path.write_text(base.format('empty = "ignore"\n'))
    assert load_study(path).empty == "ignore" and load_study(path).to_dict()["empty"] == "ignore"
    path.write_text(base.format(""))
    plain = load_study(path)
    assert plain.empty == "one" and "empty" not in plain.to_dict()
    assert Study.from_dict(plain.to_dict()).empty == "one"
    assert same_study(plain.to_dict(), plain)  # as an experiment stored before the key existed
    assert not same_study(plain.to_dict(), Study.from_dict({**plain.to_dict(), "empty": "ignore"}))
    path.write_text(base.format('empty = "zero"\n'))
    with pytest.raises(UserError, match="empty must be one .* or ignore"):
        load_study(path)


def test_grid_cells_scored_with_ignore_equal_monai(lab) -> None:
    from reuse_console.engine.grids.experiment import load_experiment
    from reuse_console.engine.grids.grid import run_grid
    from reuse_console.engine.models.registry import load_model

    slices = make_frames(lab)
    study = Study(
        name="g",
        target="frames",
        sources=[Source("random")],
        subjects=[2],
        seeds=[0],
        train=TrainSettings(arch_config={"base_width": 4}, epochs=1, batch=4, augment=False),
        empty="ignore",
    )
    run_grid(lab, study, device="cpu")
    exp = load_experiment(lab, "g")
    (cell,) = exp.cells
    assert exp.study["empty"] == "ignore"
    model, _ = load_model(lab, cell.checkpoint)
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(slices.images).unsqueeze(1)).argmax(dim=1).numpy()
    want = np.stack(
        [
            monai_metrics.compute_dice(
                _onehot(pred[slices.subject == s]), _onehot(slices.labels[slices.subject == s]), ignore_empty=True
            )[0].numpy()
            for s in (2, 3)
        ]
    )
    np.testing.assert_allclose(cell.dice, want, atol=1e-6, equal_nan=True)
    assert np.isnan(cell.dice[1, 1]) and not np.isnan(cell.dice[0, 1])  # patient003 has no RV reference
    means = exp.cell_means()[0]
    assert means[1] == pytest.approx(want[0, 1])  # RV: the one subject with a reference
    assert means[-1] == pytest.approx(np.mean([want[0, 1], want[:, 2].mean(), want[:, 3].mean()]))
