"""Alignment: permutation groups from the fx graph, weight/activation matching, the aligned checkpoint.

A model whose channels were permuted by hand (every group, skips and residuals included) is the
same function; alignment must find the inverse permutations exactly and bring every tensor back
(RMSE 0), for the built-in UNet and PSPNet and a user model (smp Unet on resnet18).
"""

from __future__ import annotations

import copy

import pytest
import torch
from swap_lab import make_lab, randomise_bn
from torch import nn

from reuse_console.engine.compare.align import run_align
from reuse_console.engine.compare.align_states import align_states, output_difference
from reuse_console.engine.compare.matching import permute_state, weight_matching
from reuse_console.engine.compare.perm_spec import permutation_spec
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.models.unet import UNet
from reuse_console.store.checkpoints import read_checkpoint, read_extra
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

X = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine parameters made distinct per channel (fresh ones are all equal)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model.eval()


def _function_gap(model: nn.Module, a: dict, b: dict) -> float:
    return output_difference(model, a, b, [X], torch.device("cpu"))


def _hand_permuted_unet(state: dict[str, torch.Tensor], perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's channels permuted as its code reads, written out without the fx analysis."""
    out = {k: v.clone() for k, v in state.items()}

    def rows(module: str, p: torch.Tensor, axis: int = 0, leaves=("weight", "bias")) -> None:
        for leaf in leaves:
            out[f"{module}.{leaf}"] = out[f"{module}.{leaf}"].index_select(axis if leaf == "weight" else 0, p)

    def cols(module: str, p: torch.Tensor, start: int = 0, axis: int = 1) -> None:
        w = out[f"{module}.weight"]
        index = torch.arange(w.shape[axis])
        index[start : start + len(p)] = start + p
        out[f"{module}.weight"] = w.index_select(axis, index)

    bn = ("weight", "bias", "running_mean", "running_var")
    blocks = [f"enc{i}" for i in range(1, 6)] + [f"dec{i}" for i in range(1, 5)]
    for block in blocks:
        for j in (1, 2):
            p = perms[f"{block}.conv{j}"]
            rows(f"{block}.conv{j}", p)
            rows(f"{block}.bn{j}", p, leaves=bn)
        cols(f"{block}.conv2", perms[f"{block}.conv1"])
    for i in range(1, 5):
        up = f"up{i}"
        out[f"{up}.weight"] = out[f"{up}.weight"].index_select(1, perms[up])  # transposed: (in, out, k, k)
        out[f"{up}.bias"] = out[f"{up}.bias"].index_select(0, perms[up])
        cols(f"dec{i}.conv1", perms[up])  # torch.cat([up_i(...), skip]): the up-conv's part first
        skip = perms[f"enc{5 - i}.conv2"]
        cols(f"dec{i}.conv1", skip, start=out[f"dec{i}.conv1.weight"].shape[1] - len(skip))
        source = "enc5.conv2" if i == 1 else f"dec{i - 1}.conv2"
        cols(up, perms[source], axis=0)
    for i in range(1, 5):
        cols(f"enc{i + 1}.conv1", perms[f"enc{i}.conv2"])
    cols("head", perms["dec4.conv2"])
    return out


def test_unet_permuted_by_hand_aligns_back_exactly() -> None:
    torch.manual_seed(0)
    model = _randomised(UNet(1, 4, base_width=4))
    state = model.state_dict()
    spec = permutation_spec(model, X[:1])
    assert len(spec.groups) == 22  # 18 conv+BN, 4 up-convs; the head's outputs never move
    g = torch.Generator().manual_seed(1)
    true = {name: torch.randperm(group.size, generator=g) for name, group in spec.groups.items()}
    donor = _hand_permuted_unet(state, true)
    assert _function_gap(model, state, donor) < 1e-5  # the hand permutation keeps the function
    assert max(float((donor[k].float() - state[k].float()).abs().max()) for k in state) > 0.1
    for method in ("weights", "activations"):
        spec2, perms, _, _ = align_states(model, state, donor, [X], method=method)
        for name in true:
            assert torch.equal(perms[name], torch.argsort(true[name])), (method, name)
        aligned = permute_state(spec2, donor, perms)
        for key in state:
            assert torch.equal(aligned[key], state[key]), (method, key)  # RMSE 0 on every tensor
        assert _function_gap(model, donor, aligned) < 1e-5


def test_groups_follow_skips_residuals_and_the_head() -> None:
    unet = permutation_spec(UNet(1, 4, base_width=4).eval(), X[:1])
    segments = unet.axes["dec1.conv1.weight"][1]
    assert [(s.group, s.start, s.size) for s in segments] == [("up1", 0, 32), ("enc4.conv2", 32, 32)]
    assert unet.axes["up1.weight"].keys() == {0, 1}  # transposed conv: in on axis 0, out on axis 1
    assert 0 not in unet.axes["head.weight"] and "head.bias" not in unet.axes
    psp = permutation_spec(build_model("pspnet", default_config("pspnet", 1, 4, width=0.125)).eval(), X[:1])
    stem = psp.axes["backbone.conv1.weight"][0][0].group
    for key in ("backbone.layer1.0.conv2.weight", "backbone.layer1.1.conv2.weight", "backbone.bn1.running_mean"):
        assert psp.axes[key][0][0].group == stem  # residual adds share one permutation
    bottleneck = psp.axes["bottleneck.conv.weight"][1]
    assert len(bottleneck) == 5  # the trunk's features and the four pyramid branches


def _smp_unet() -> tuple[str, dict]:
    return "segmentation_models_pytorch:Unet", {
        "encoder_name": "resnet18",
        "encoder_weights": None,
        "in_channels": 1,
        "classes": 4,
    }


def _dynunet() -> tuple[str, dict]:
    """MONAI's DynUNet: its `skip_layers` name the same tensors a second time (aliases)."""
    return "monai.networks.nets:DynUNet", {
        "spatial_dims": 2,
        "in_channels": 1,
        "out_channels": 4,
        "kernel_size": [3, 3, 3],
        "strides": [1, 2, 2],
        "upsample_kernel_size": [2, 2],
        "filters": [4, 8, 16],
    }


@pytest.mark.parametrize(
    "arch,config",
    [
        ("unet", default_config("unet", 1, 4, base_width=4)),
        ("pspnet", default_config("pspnet", 1, 4, width=0.125)),
        _smp_unet(),
        _dynunet(),
    ],
    ids=["unet", "pspnet", "smp-unet-resnet18", "monai-dynunet"],
)
def test_random_permutations_of_every_group_are_recovered(arch: str, config: dict) -> None:
    torch.manual_seed(0)
    model = _randomised(build_model(arch, config))
    state = model.state_dict()
    spec = permutation_spec(model, X[:1])
    g = torch.Generator().manual_seed(2)
    true = {name: torch.randperm(group.size, generator=g) for name, group in spec.groups.items()}
    donor = permute_state(spec, state, true)
    assert _function_gap(model, state, donor) < 1e-5  # the groups are symmetries of the model
    result = weight_matching(spec, state, donor, seed=3)
    for name in true:
        assert torch.equal(true[name][result.perms[name]], torch.arange(len(true[name]))), name
    aligned = permute_state(spec, donor, result.perms)
    assert all(torch.equal(aligned[k], state[k]) for k in state)


class _GroupedNet(nn.Module):
    """Depthwise conv, GroupNorm blocks, a transposed conv, a squeeze-excite style product, and a
    grouped conv (its channels stay where they are) joined by concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2)
        self.gate = nn.Conv2d(6, 6, 1)
        self.side = nn.Conv2d(1, 4, 1)
        self.grouped = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)
        self.head = nn.Conv2d(10, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.gn(self.conv(x)))
        y = torch.relu(self.up(torch.relu(self.depthwise(y)) + y))
        y = y * torch.sigmoid(self.gate(y.mean((2, 3), keepdim=True)))
        z = self.grouped(self.side(x))
        return self.head(torch.cat([y, z], dim=1)[:, :, 1:-1])


def test_depthwise_grouped_groupnorm_and_transposed() -> None:
    model = _randomised(_GroupedNet())
    spec = permutation_spec(model, X[:1])
    assert spec.groups["conv"].blocks == 2  # GroupNorm(2, 8): whole blocks of 4 channels move together
    assert set(spec.groups) == {"conv", "up"}  # the gate joins the up-conv's group; the grouped conv's stay put
    assert spec.axes["depthwise.weight"].keys() == {0} and "grouped.weight" not in spec.axes
    assert [s.group for s in spec.axes["head.weight"][1]] == ["up", None]
    state = model.state_dict()
    true = {"conv": torch.tensor([5, 4, 7, 6, 2, 0, 3, 1])}
    true["up"] = torch.randperm(6, generator=torch.Generator().manual_seed(4))
    donor = permute_state(spec, state, true)
    assert _function_gap(model, state, donor) < 1e-5
    perms = weight_matching(spec, state, donor).perms
    aligned = permute_state(spec, donor, perms)
    assert all(torch.equal(aligned[k], state[k]) for k in state)


class _SlicesChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x)[:, :2])


class _OwnConv(nn.Module):
    """A module of its own that convolves with its parameter directly (no torch.nn module to follow)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4, 3, 3))
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        if bool(y.mean() > -1e9):  # Python branching on a value: torch.fx cannot trace it, recording can
            y = torch.nn.functional.conv2d(y, self.w, padding=1)
        return self.head(y)


def test_a_graph_it_cannot_analyse_is_one_line_naming_the_node() -> None:
    with pytest.raises(UserError, match=r"node getitem .*indexes channels"):
        permutation_spec(_SlicesChannels().eval(), X[:1])
    with pytest.raises(UserError, match=r"cannot find permutation groups: node w .*reads tensor w outside its module"):
        permutation_spec(_OwnConv().eval(), X[:1])


def test_run_align_writes_a_checkpoint_with_the_donors_function(tmp_path) -> None:
    lab = make_lab(Lab(tmp_path / "lab"))
    from swap_lab import make_checkpoint

    make_checkpoint(lab, "seg2", seed=5)
    events: list = []
    result = run_align(lab, "seg2", "seg", data="toy", name="al", device="cpu", report=events.append)
    assert result.max_difference <= 1e-5 and result.moved() > 0
    state, meta = read_checkpoint(lab.path("checkpoints", "al"))
    donor, donor_meta = read_checkpoint(lab.path("checkpoints", "seg2"))
    recipient, _ = read_checkpoint(lab.path("checkpoints", "seg"))
    assert meta.extra["alignment"]["donor"] == "seg2" and meta.extra["alignment"]["recipient"] == "seg"
    assert meta.extra["alignment"]["method"] == "weights" and meta.extra["size"] == donor_meta.extra["size"]
    perms = read_extra(lab.path("checkpoints", "al"), "alignment")
    assert perms is not None and set(perms) == {f"{g}.perm" for g in result.spec.groups}
    model = randomise_bn(UNet(1, 4, base_width=4), 0).eval()
    assert _function_gap(model, donor, state) < 1e-5
    raw = sum(float(((donor[k] - recipient[k]) ** 2).sum()) for k in result.spec.axes)
    aligned = sum(float(((state[k] - recipient[k]) ** 2).sum()) for k in result.spec.axes)
    assert aligned < raw
    assert any(type(e).__name__ == "Finished" for e in events)
    with pytest.raises(UserError, match="already exists"):
        run_align(lab, "seg2", "seg", data="toy", name="al", device="cpu")
    with pytest.raises(UserError, match="unknown method"):
        run_align(lab, "seg2", "seg", data="toy", method="magic")
    assert copy.copy(result.to_json())["rmse"]


def test_lraspp_with_fresh_norms_aligns_back_from_a_permuted_copy() -> None:
    """torchvision's LR-ASPP MobileNetV3 as built (every norm alike: only the convs tell channels
    apart, and an expansion group only by its depthwise kernel): a permuted copy must come back to
    RMSE 0 on every tensor with the inverse permutations (plain sweeps from the identity stopped
    in a local optimum here, 29 of 30 groups wrong)."""
    torch.manual_seed(0)
    config = {"num_classes": 4, "weights_backbone": None}
    model = build_model("torchvision.models.segmentation:lraspp_mobilenet_v3_large", config).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    spec = permutation_spec(model, x)
    assert len(spec.groups) == 30
    state = model.state_dict()
    g = torch.Generator().manual_seed(10)
    true = {name: torch.randperm(group.size, generator=g) for name, group in spec.groups.items()}
    donor = permute_state(spec, state, true)
    assert output_difference(model, state, donor, [x], torch.device("cpu")) < 1e-5
    result = weight_matching(spec, state, donor, seed=0)
    for name in true:
        assert torch.equal(true[name][result.perms[name]], torch.arange(len(true[name]))), name
    aligned = permute_state(spec, donor, result.perms)
    assert all(torch.equal(aligned[k], state[k]) for k in state)
