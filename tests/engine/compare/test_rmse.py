"""RMSE per layer and kind, all pairs of N models, checked against a numpy hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reuse_console.engine.compare.rmse import compare_states, read_comparison, run_rmse
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.unet import UNet
from reuse_console.store.errors import UserError


def _states(n: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = UNet(1, 4, base_width=4)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.5)
                    m.running_var.uniform_(0.2, 3.0)
                    m.bias.normal_(0, 0.1)
        out.append(model.state_dict())
    return out


def test_rmse_all_pairs_equals_numpy() -> None:
    states = _states(3)
    index = LayerIndex.from_model(UNet(1, 4, base_width=4), 1)
    comp = compare_states(states, index.layers, models=["a", "b", "c"])
    assert comp.pairs == [(0, 1), (0, 2), (1, 2)]
    assert comp.kinds == ["RM", "RV", "RW", "RB", "W", "B"]
    checked = 0
    for p, (i, j) in enumerate(comp.pairs):
        for li, layer in enumerate(index.layers):
            for ki, kind in enumerate(comp.kinds):
                if kind not in layer.kinds:
                    assert np.isnan(comp.rmse[p, li, ki])
                    continue
                a = states[i][layer.key(kind)].numpy().astype(np.float64).ravel()
                b = states[j][layer.key(kind)].numpy().astype(np.float64).ravel()
                rmse = np.sqrt(np.sum((a - b) ** 2) / a.size)
                assert comp.rmse[p, li, ki] == pytest.approx(rmse, rel=1e-12)
                assert comp.relative[p, li, ki] == pytest.approx(rmse / np.sqrt(np.sum(a * a) / a.size), rel=1e-12)
                checked += 1
    assert checked == 3 * sum(len(layer.kinds) for layer in index.layers)
    rows = comp.to_json()["pairs"][0]["rows"]
    assert rows[0]["layer"] == 1 and rows[0]["kind"] == "RM" and rows[0]["rmse"] == comp.rmse[0, 0, 0]
    assert comp.rmse[0, 0, 0] > 0.1  # different running means really are different


def test_identical_models_have_zero_rmse_and_relative_is_nan_safe() -> None:
    state = _states(1)[0]
    index = LayerIndex.from_model(UNet(1, 4, base_width=4), 1)
    state = {k: torch.zeros_like(v) if k.endswith("bn1.bias") else v for k, v in state.items()}
    comp = compare_states([state, state], index.layers, ("RB", "B"))
    assert np.nanmax(comp.rmse) == 0.0
    # an all-zero tensor has RMS 0: its relative RMSE (0/0) is shown as null, not a number
    assert comp.to_json()["pairs"][0]["rows"][0]["relative"] is None


def test_rmse_in_lab_is_stored_and_refuses_mismatches(lab) -> None:
    from swap_lab import make_lab

    make_lab(lab)
    comp = run_rmse(lab, ["seg", "ae"], kinds="RM,W")
    back = read_comparison(lab.path("comparisons", comp.name))
    assert comp.name == "rmse-seg-ae" and back.models == ["seg", "ae"]
    np.testing.assert_array_equal(back.rmse, comp.rmse)
    assert back.kinds == ["RM", "W"] and back.layers[:2] == ["1", "2"] and back.index[-1] is None
    with pytest.raises(UserError, match=r"tensor enc1\.conv1\.weight differs"):
        run_rmse(lab, ["seg", "wide"])
    with pytest.raises(UserError, match="at least two"):
        run_rmse(lab, ["seg"])
