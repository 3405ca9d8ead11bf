"""Alignment of MONAI's BasicUNet, whose UpCat branches on its inputs in Python (torch.fx cannot
trace it): the permutation groups come from a graph recorded from a real forward pass.

Checked against the model's own forward (not the recorded graph): hand-applied random
permutations of every group keep the outputs (the groups are symmetries) and are recovered
exactly; aligning another seed's model keeps its function to 1e-5 and lowers the RMSE to the
recipient below the raw RMSE, for weight and activation matching.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reuse_console.engine.compare.align_states import align_states, output_difference
from reuse_console.engine.compare.matching import permute_state, weight_matching
from reuse_console.engine.compare.perm_spec import permutation_spec
from reuse_console.engine.models.registry import build_model

ARCH = "monai.networks.nets:BasicUNet"
X = torch.randn(3, 1, 61, 61, generator=torch.Generator().manual_seed(0))  # odd size: UpCat pads
CPU = torch.device("cpu")


def _basic_unet(norm: object, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    config = {"spatial_dims": 2, "in_channels": 1, "out_channels": 4, "features": [4, 4, 8, 16, 32, 4], "norm": norm}
    model = build_model(ARCH, config).eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # distinct statistics and affine values per channel (MONAI starts them equal)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model


def _sq(a: dict, b: dict, keys: object) -> float:
    return sum(float(((a[k].double() - b[k].double()) ** 2).sum()) for k in keys)  # type: ignore[union-attr]


def test_upcat_concatenation_splits_the_consumers_input_channels() -> None:
    spec = permutation_spec(_basic_unet("batch", 0), X[:1])
    assert len(spec.groups) == 22  # 10 encoder convs, 4 x (deconv + 2 convs); the head is never permuted
    segs = spec.axes["upcat_4.convs.conv_0.conv.weight"][1]  # torch.cat([x_e, x_0]): the skip first
    assert [(s.group, s.start, s.size) for s in segs] == [
        ("down_3.convs.conv_1.conv", 0, 16),
        ("upcat_4.upsample.deconv", 16, 16),
    ]
    assert spec.axes["upcat_4.upsample.deconv.weight"].keys() == {0, 1}  # transposed: (in, out, k, k)
    assert "final_conv.conv.weight" not in spec.axes or 0 not in spec.axes["final_conv.conv.weight"]


@pytest.mark.parametrize("norm", ["batch", ["instance", {"affine": True}]], ids=["batch", "instance"])
def test_hand_permuted_basicunet_aligns_back_exactly(norm: object) -> None:
    model = _basic_unet(norm, 0)
    state = model.state_dict()
    spec = permutation_spec(model, X[:1])
    g = torch.Generator().manual_seed(2)
    true = {name: torch.randperm(group.size, generator=g) for name, group in spec.groups.items()}
    donor = permute_state(spec, state, true)
    assert output_difference(model, state, donor, [X], CPU) < 1e-5
    perms = weight_matching(spec, state, donor, seed=3).perms
    for name in true:
        assert torch.equal(true[name][perms[name]], torch.arange(len(true[name]))), name
    aligned = permute_state(spec, donor, perms)
    assert all(torch.equal(aligned[k], state[k]) for k in state)


@pytest.mark.parametrize("method", ["weights", "activations"])
@pytest.mark.parametrize("norm", ["batch", ["group", {"num_groups": 2}]], ids=["batch", "group"])
def test_another_seed_aligns_closer_with_its_function_kept(norm: object, method: str) -> None:
    recipient, donor_model = _basic_unet(norm, 0), _basic_unet(norm, 1)
    r, d = recipient.state_dict(), donor_model.state_dict()
    spec, perms, _, _ = align_states(recipient, r, d, [X], method=method)
    aligned = permute_state(spec, d, perms)
    assert output_difference(recipient, d, aligned, [X], CPU) <= 1e-5
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    if method == "weights":  # weight matching minimises exactly this distance
        assert _sq(aligned, r, spec.axes) < _sq(d, r, spec.axes)
