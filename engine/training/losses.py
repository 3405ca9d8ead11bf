"""Training losses of the two tasks: seg (cross-entropy + soft Dice) and ae (MSE to the input).

Choice for the soft Dice term (documented in the train help and SCHEMA): it is averaged over the
*present foreground* classes only. A data set that labels only some classes (t1: MYO, rvsc: RV)
still uses the 4 canonical classes, so its unlabelled structures are background in the labels.
A Dice term for such a class would only say "never predict it", which the cross-entropy over all
C classes already teaches; background is left to the cross-entropy as well (as nnU-Net does),
so the Dice term stays focused on the small structures the paper scores.

The Dice is a *batch* Dice: sums run over every pixel of the batch, as if the batch were one
volume, with a smoothing term `smooth` in numerator and denominator (so a class missing from the
whole batch and not predicted scores 1, and a batch never divides by zero).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from reuse_console.engine.data.volumes import IGNORE


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, classes: Sequence[int], smooth: float = 1.0
) -> torch.Tensor:
    """1 - mean over `classes` of (2 sum(p*g) + s) / (sum(p) + sum(g) + s), p = softmax(logits).

    `logits` (B, C, ...), `target` (B, ...) integer labels (2D or 3D). Voxels labelled IGNORE (the
    padding of 3D blocks) count nowhere. Zero when `classes` is empty.
    """
    if not classes:
        return logits.sum() * 0.0
    probs = torch.softmax(logits.float(), dim=1)
    idx = torch.as_tensor(list(classes), device=logits.device)
    spatial = [1] * (target.ndim - 1)
    real = (target != IGNORE).unsqueeze(1).to(probs.dtype)
    p = probs.index_select(1, idx) * real  # (B, K, ...)
    g = (target.unsqueeze(1) == idx.view(1, -1, *spatial)).to(p.dtype)
    dims = (0, *range(2, logits.ndim))
    inter = (p * g).sum(dims)
    denom = p.sum(dims) + g.sum(dims)
    dice = (2.0 * inter + smooth) / (denom + smooth)
    return 1.0 - dice.mean()


def dice_classes(present: Sequence[bool]) -> list[int]:
    """The classes the soft Dice term averages over: present foreground classes (1..C-1)."""
    return [c for c, p in enumerate(present) if c > 0 and p]


def seg_loss(logits: torch.Tensor, target: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Cross-entropy over all C classes plus the soft Dice loss over `classes` (see module doc)."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE)
    return ce + soft_dice_loss(logits, target, classes)


def ae_target(images: torch.Tensor, channels: int) -> torch.Tensor:
    """The auto-encoder's target: the input image repeated on each of the C output channels."""
    return images.expand(-1, channels, *images.shape[2:])


def ae_loss(output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared error of every output channel against the (single-channel) input."""
    return F.mse_loss(output.float(), ae_target(images.float(), output.shape[1]))


def head_weights(heads: int) -> list[float]:
    """Deep supervision weights (MONAI DeepSupervisionLoss "exp", nnU-Net): halving per level, summing to 1."""
    raw = [0.5**i for i in range(heads)]
    return [w / sum(raw) for w in raw]


def deep_supervision_loss(
    heads: Sequence[torch.Tensor],
    target: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    labels: bool,
) -> torch.Tensor:
    """Weighted sum of `loss` over the heads (main head first), the target resized to each head's
    size: labels by nearest neighbour (nnU-Net), images by area averaging."""
    total = heads[0].new_zeros((), dtype=torch.float32)
    for weight, head in zip(head_weights(len(heads)), heads):
        size = tuple(head.shape[2:])  # (H, W) or (D, H, W)
        goal = target
        if size != tuple(target.shape[1:] if labels else target.shape[2:]):
            if labels:
                goal = F.interpolate(target[:, None].float(), size=size, mode="nearest")[:, 0].long()
            else:
                goal = F.interpolate(target.float(), size=size, mode="area")
        total = total + weight * loss(head, goal)
    return total
