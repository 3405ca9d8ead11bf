"""Every norm a CNN has, in the layer index and every lens: real MONAI models, tiny.

MONAI `BasicUNet(spatial_dims=2, features=(4, 4, 8, 8, 16, 4))` prints (one TwoConv shown; each
Convolution is `conv` then `adn.N` (the norm), dropout, activation):

    conv_0: TwoConv(conv_0, conv_1)              2 Conv+norm
    down_1..down_4: MaxPool, TwoConv              8 Conv+norm
    upcat_4..upcat_1: upsample.deconv             4 ConvTranspose2d, no norm after them
                      convs: TwoConv              8 Conv+norm
    final_conv: Conv2d(4, 3, 1)                   1 Conv, no norm
  -> 18 numbered layers, then 4 deconvs and final_conv by name.

MONAI `DynUNet(spatial_dims=2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
filters=[4, 8, 16])` prints:

    input_block: UnetBasicBlock(conv1.conv, conv2.conv, lrelu, norm1, norm2)   2 Conv+norm
    downsamples.0: UnetBasicBlock                                               2 Conv+norm
    bottleneck: UnetBasicBlock                                                  2 Conv+norm
    upsamples.0, upsamples.1: UnetUpBlock(transp_conv.conv, conv_block: UnetBasicBlock)
                                                          2 ConvTranspose2d + 4 Conv+norm
    output_block: UnetOutBlock(conv.conv)                                       1 Conv
    skip_layers: the same blocks again (shared modules, indexed once)
  -> 10 numbered layers, then 2 transposed convs and the output conv. Its convs have no bias.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from mini_nets import naive_dice
from monai.networks.nets import BasicUNet, DynUNet
from norm_nets import MixedNorms
from torch import nn

from reuse_console.engine.compare.bn import analyse, outside_note, run_bn
from reuse_console.engine.compare.rmse import compare_states
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import save_model
from reuse_console.engine.reuse.plans import universe
from reuse_console.engine.reuse.transfer import freeze
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.swap import Swap, SwapSpec
from reuse_console.engine.swaps.variants import plan_variants
from reuse_console.store.checkpoints import CheckpointMeta
from reuse_console.store.errors import UserError

NORMS: dict[str, Any] = {
    "batch": "batch",
    "instance": ("instance", {"affine": True}),
    "group": ("group", {"num_groups": 2}),
}
NORM_CLASS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "group": nn.GroupNorm}


def _basic_unet(norm: Any, seed: int = 0) -> BasicUNet:
    """A tiny BasicUNet whose norm weights and biases are random too (MONAI starts them at 1 and 0)."""
    torch.manual_seed(seed)
    model = BasicUNet(spatial_dims=2, in_channels=1, out_channels=3, features=(4, 4, 8, 8, 16, 4), norm=norm)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return model.eval()


def _dynunet(norm: Any = "instance") -> DynUNet:
    torch.manual_seed(0)
    return DynUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=3,
        kernel_size=[3, 3, 3],
        strides=[1, 2, 2],
        upsample_kernel_size=[2, 2],
        filters=[4, 8, 16],
        norm_name=norm,
    ).eval()


def _expected_kinds(conv: nn.Module, norm: nn.Module | None) -> tuple[str, ...]:
    """The kinds a layer must have, from its modules' own flags (not from the state dict)."""
    kinds: list[str] = []
    if norm is not None:
        if getattr(norm, "track_running_stats", False):
            kinds += ["RM", "RV"]
        if getattr(norm, "affine", False) or getattr(norm, "elementwise_affine", False):
            kinds += ["RW", "RB"]
    kinds.append("W")
    if conv.bias is not None:
        kinds.append("B")
    return tuple(kinds)


def _check_kinds(model: nn.Module, index: LayerIndex) -> None:
    modules = dict(model.named_modules())
    for layer in index.layers:
        assert layer.conv is not None
        norm = modules[layer.bn] if layer.bn is not None else None
        assert layer.kinds == _expected_kinds(modules[layer.conv], norm), layer.name


@pytest.mark.parametrize("norm", sorted(NORMS))
def test_basic_unet_has_18_layers_with_the_kinds_its_norm_has(norm: str) -> None:
    model = _basic_unet(NORMS[norm])
    index = LayerIndex.from_model(model, 1, size=32)
    numbered = index.numbered
    assert len(numbered) == 18
    modules = dict(model.named_modules())
    assert all(type(modules[str(layer.bn)]) is NORM_CLASS[norm] for layer in numbered)
    assert numbered[0].conv == "conv_0.conv_0.conv" and numbered[0].bn == "conv_0.conv_0.adn.N"
    assert numbered[-1].conv == "upcat_1.convs.conv_1.conv"
    loose = [layer for layer in index.layers if layer.index is None]
    assert [layer.conv for layer in loose] == [f"upcat_{i}.upsample.deconv" for i in (4, 3, 2, 1)] + ["final_conv"]
    _check_kinds(model, index)
    want = {"batch": ("RM", "RV", "RW", "RB", "W", "B"), "instance": ("RW", "RB", "W", "B")}
    want["group"] = want["instance"]
    assert numbered[0].kinds == want[norm]
    summary = index.norm_summary()
    assert summary.counts == {NORM_CLASS[norm].__name__: 18} and summary.unpaired == []
    assert summary.groups == {(NORM_CLASS[norm].__name__, want[norm][:-2]): 18}  # the norm's kinds, W B left out


@pytest.mark.parametrize(
    "norm,kinds",
    [
        ("instance", ("W",)),  # MONAI's default InstanceNorm: no affine, no running statistics
        (("instance", {"affine": True, "track_running_stats": True}), ("RM", "RV", "RW", "RB", "W")),
    ],
)
def test_dynunet_has_10_layers_with_the_kinds_its_instance_norm_has(norm: Any, kinds: tuple[str, ...]) -> None:
    model = _dynunet(norm)
    index = LayerIndex.from_model(model, 1, size=32)
    assert len(index.numbered) == 10
    assert [layer.bn for layer in index.numbered[:2]] == ["input_block.norm1", "input_block.norm2"]
    assert [layer.name for layer in index.layers if layer.index is None] == [
        "upsamples.0.transp_conv.conv",
        "upsamples.1.transp_conv.conv",
        "output_block.conv.conv",
    ]
    _check_kinds(model, index)
    assert all(layer.kinds == kinds for layer in index.numbered)
    assert index.norm_summary().counts == {"InstanceNorm2d": 10}
    assert index.norm_summary().groups == {("InstanceNorm2d", kinds[:-1]): 10}


def test_swapping_an_instance_norm_weight_changes_exactly_that_tensor() -> None:
    recipient, donor = _basic_unet(NORMS["instance"], seed=1), _basic_unet(NORMS["instance"], seed=2)
    index = LayerIndex.from_model(recipient, 1, size=32)
    spec = SwapSpec.parse("r", "d", index, "3", "RW")
    [key] = spec.keys(index)
    assert key == "down_1.convs.conv_0.adn.N.weight"
    before = {k: v.clone() for k, v in recipient.state_dict().items()}
    want = dict(before)
    want[key] = donor.state_dict()[key].clone()  # the hand-built state dict after the swap
    assert not torch.equal(want[key], before[key])
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        y0 = recipient(x)
        with Swap(recipient, donor.state_dict(), [key]):
            state = recipient.state_dict()
            assert state.keys() == want.keys()
            assert all(torch.equal(state[k], want[k]) for k in want)
            assert not torch.allclose(recipient(x), y0)  # the swap reached the forward
    assert all(torch.equal(v, before[k]) for k, v in recipient.state_dict().items())


def test_rmse_covers_rw_rb_of_every_instance_norm_layer() -> None:
    a, b = _basic_unet(NORMS["instance"], seed=1), _basic_unet(NORMS["instance"], seed=2)
    index = LayerIndex.from_model(a, 1, size=32)
    comp = compare_states([a.state_dict(), b.state_dict()], index.layers, models=["a", "b"])
    modules = dict(a.named_modules())
    norm_layers = [layer for layer in index.layers if isinstance(modules.get(str(layer.bn)), nn.InstanceNorm2d)]
    assert len(norm_layers) == 18
    for layer in norm_layers:
        li = comp.layers.index(layer.name)
        for kind in ("RW", "RB"):
            x = a.state_dict()[layer.key(kind)].double().numpy()
            y = b.state_dict()[layer.key(kind)].double().numpy()
            value = comp.rmse[0, li, comp.kinds.index(kind)]
            assert value > 0 and value == pytest.approx(np.sqrt(np.mean((x - y) ** 2)), rel=1e-12)
        assert np.isnan(comp.rmse[0, li, comp.kinds.index("RM")])  # no running statistics: no RM value


class _Toy(nn.Module):
    """Conv + BatchNorm, twice, then a plain conv head, in `dims` spatial dimensions."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv, bn = {1: (nn.Conv1d, nn.BatchNorm1d), 3: (nn.Conv3d, nn.BatchNorm3d)}[dims]
        self.conv1, self.bn1 = conv(2, 4, 3, padding=1), bn(4)
        self.conv2, self.bn2 = conv(4, 4, 3, padding=1, bias=False), bn(4)
        self.head = conv(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))))


@pytest.mark.parametrize("dims", [1, 3])
def test_1d_and_3d_toys_index_and_their_tensors_swap_and_compare(dims: int) -> None:
    torch.manual_seed(dims)
    a, b = _Toy(dims).eval(), _Toy(dims).eval()
    index = LayerIndex.from_model(a, 2, size=8)
    assert [(layer.name, layer.conv, layer.bn) for layer in index.layers] == [
        ("1", "conv1", "bn1"),
        ("2", "conv2", "bn2"),
        ("head", "head", None),
    ]
    assert index.get(1).kinds == ("RM", "RV", "RW", "RB", "W", "B") and index.get(2).kinds == (
        "RM",
        "RV",
        "RW",
        "RB",
        "W",
    )
    assert index.get(1).shapes["W"] == (4, 2, *([3] * dims))
    assert index.norm_summary().counts == {f"BatchNorm{dims}d": 2}
    comp = compare_states([a.state_dict(), b.state_dict()], index.layers)
    w = comp.rmse[0, 0, comp.kinds.index("W")]
    assert w == pytest.approx(float((a.conv1.weight - b.conv1.weight).detach().double().square().mean().sqrt()))
    assert len(universe(index)) == 6 + 5 + 2
    with Swap(a, b.state_dict(), [index.get(2).key("W")]):
        assert torch.equal(a.conv2.weight, b.conv2.weight)


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return model.eval()


def test_every_norm_type_indexes_and_a_lone_norm_is_listed_not_numbered() -> None:
    model = MixedNorms()
    index = LayerIndex.from_model(model, 1, size=8)
    assert [(layer.conv, layer.bn) for layer in index.numbered] == [(f"c{i}", f"n{i}") for i in range(1, 6)] + [
        ("fc", "fn")
    ]
    assert [layer.kinds for layer in index.numbered] == [
        ("RM", "RV", "RW", "RB", "W", "B"),
        ("RM", "RV", "RW", "RB", "W", "B"),
        ("RW", "RB", "W", "B"),
        ("RW", "RB", "W", "B"),
        ("W", "B"),
        ("RW", "W", "B"),  # LayerNorm(bias=False)
    ]
    lone = index.get("inorm")
    assert lone.index is None and lone.conv is None and lone.kinds == ("RM", "RV", "RW", "RB")
    summary = index.norm_summary()
    assert summary.counts == {"BatchNorm2d": 1, "InstanceNorm2d": 2, "GroupNorm": 1, "LayerNorm": 2}
    assert summary.unpaired == [("inorm", "BatchNorm2d")]


def test_bn_theory_reads_running_statistics_norms_and_names_the_others() -> None:
    recipient, donor = _randomised(MixedNorms(), 1), _randomised(MixedNorms(), 2)
    index = LayerIndex.from_model(recipient, 1, size=8)
    layers = analyse(recipient, index, recipient.state_dict(), donor.state_dict())
    assert [layer.module for layer in layers] == ["n1", "n2", "inorm"]
    # an InstanceNorm with running statistics is y = s * x + t in eval mode, as BN is
    s, t = layers[1].s["recipient"], layers[1].t["recipient"]
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        y = recipient.n2.double()(x)
    assert (
        float(
            (y - (torch.from_numpy(s)[None, :, None, None] * x + torch.from_numpy(t)[None, :, None, None])).abs().max()
        )
        < 1e-12
    )
    note = outside_note(recipient, index)
    assert note is not None and note.count("\n") == 0
    assert "4 norm layer(s)" in note and "GroupNorm 1" in note and "LayerNorm 2" in note and "InstanceNorm2d 1" in note


def test_a_model_with_no_norm_is_w_b_only() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False))
    index = LayerIndex.from_model(model, 1, size=8)
    assert index.numbered == [] and [layer.kinds for layer in index.layers] == [("W", "B"), ("W",)]
    assert [layer.name for layer in index.layers] == ["conv0", "conv2"]
    assert index.norm_summary().counts == {} and analyse(model, index, model.state_dict(), model.state_dict()) == []
    assert outside_note(model, index) is None
    comp = compare_states([model.state_dict(), _randomised(model, 3).state_dict()], index.layers)
    assert comp.kinds == ["RM", "RV", "RW", "RB", "W", "B"] and np.isfinite(comp.rmse[0, :, 4]).all()


def test_freezing_keeps_every_norm_kind_fixed_through_training() -> None:
    torch.manual_seed(0)
    model = MixedNorms()
    index = LayerIndex.from_model(model, 1, size=8)
    keys = [layer.key(kind) for layer in index.layers for kind in layer.kinds if kind.startswith("R")]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    handle = freeze(model, keys)
    assert "n2.running_mean" in handle.stats and "n3.weight" in handle.params and "fn.weight" in handle.params
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.5)
    model.train()
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 1, 8, 8) * 3 + 1).square().mean().backward()
        opt.step()
    state = model.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in keys)
    assert not torch.equal(state["c2.weight"], before["c2.weight"])  # the convs trained
    handle.remove()
    model(torch.randn(4, 1, 8, 8) + 5)
    assert not torch.equal(model.n2.running_mean, before["n2.running_mean"])  # unfrozen again


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_a_scan_of_norm_tensors_gives_the_naive_loops_dice(norm: str) -> None:
    recipient, donor = _basic_unet(NORMS[norm], seed=1), _basic_unet(NORMS[norm], seed=2)
    index = LayerIndex.from_model(recipient, 1, size=32)
    variants = plan_variants([index.get(n) for n in ("1", "9", "18")], ("RW", "RB", "W"), (1.0,))
    assert [v.kind for v in variants] == ["RW", "RB", "W"] * 3
    g = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(2):
        images = torch.randn(2, 1, 32, 32, generator=g)
        with torch.no_grad():
            labels = recipient(images).argmax(1)
        labels[:, :8] = torch.randint(0, 3, (2, 8, 32), generator=g)
        batches.append(EvalBatch(images, labels, torch.tensor([0, 1])))
    want = [naive_dice(recipient, donor.state_dict(), v, batches, classes=3) for v in variants]
    base, dice, _ = evaluate_variants(
        recipient,
        donor.state_dict(),
        variants,
        batches,
        classes=["background", "a", "b"],
        present=[True] * 3,
        num_subjects=2,
        device=torch.device("cpu"),
    )
    np.testing.assert_allclose(dice, np.stack(want), rtol=0, atol=1e-9)
    assert np.abs(dice - base).max() > 0.01  # the norm swaps really change predictions


def test_bn_in_the_lab_reads_the_tracked_norms_and_refuses_a_model_with_none(lab) -> None:
    for name, seed in (("mixed-a", 1), ("mixed-b", 2)):
        config = {"in_channels": 1, "out_channels": 6}
        meta = CheckpointMeta(arch="norm_nets:MixedNorms", arch_config=config, task="seg")
        save_model(lab, name, _randomised(MixedNorms(), seed), meta)
    study = run_bn(lab, "mixed-a", "mixed-b")
    assert [layer.module for layer in study.layers] == ["n1", "n2", "inorm"]
    assert study.note is not None and "4 norm layer(s) without running statistics" in study.note
    group = {"spatial_dims": 2, "in_channels": 1, "out_channels": 3, "features": [4, 4, 8, 8, 16, 4]}
    group["norm"] = ["group", {"num_groups": 2}]
    for name, seed in (("group-a", 1), ("group-b", 2)):
        meta = CheckpointMeta(arch="monai.networks.nets:BasicUNet", arch_config=group, task="seg")
        save_model(lab, name, _basic_unet(NORMS["group"], seed), meta)
    with pytest.raises(UserError, match=r"no norm with running statistics.*\(its norms: GroupNorm 18\)"):
        run_bn(lab, "group-a", "group-b")
