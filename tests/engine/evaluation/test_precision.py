"""The class-score layers run in fp32 under bf16 autocast: checked against F.conv2d by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reuse_console.engine.evaluation.precision import exact_heads, heads
from reuse_console.engine.models.unet import UNet


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


def test_heads_are_the_layers_with_one_output_per_class() -> None:
    unet = UNet(1, 4, base_width=8)
    assert heads(unet, 4) == [unet.head]
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    tv = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    assert set(map(id, heads(tv, 5))) == {id(tv.classifier.low_classifier), id(tv.classifier.high_classifier)}


def test_the_head_is_fp32_of_the_bf16_activations_and_nothing_else_changes() -> None:
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.randn(2, 1, 16, 16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(x)
        with exact_heads(model, 3, "bf16") as found:
            exact = model(x)
        again = model(x)
        hidden = torch.relu(model.body(x))  # bf16, as the head receives it
    assert found == [model.head]
    assert plain.dtype == torch.bfloat16 and exact.dtype == torch.float32
    by_hand = F.conv2d(hidden.float(), model.head.weight, model.head.bias)
    torch.testing.assert_close(exact, by_hand, rtol=0, atol=0)
    assert torch.equal(again, plain)  # the head is itself again after the block
    assert "forward" not in vars(model.head)
    with exact_heads(model, 3, "fp32") as none:
        assert none == []
