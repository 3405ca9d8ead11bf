"""Where a scan's donor tensors come from: a checkpoint, or a re-initialisation of the recipient.

Besides another model's checkpoint, a donor may be
- `init`: the recipient run's own initial weights (`<run>.init`, stored by training at epoch 0):
  swapping a tensor back to it is Zhang, Bengio & Singer's re-initialisation ("Are All Layers
  Created Equal?"): is a layer reusable from a donor, or simply robust to being reset?
- `random:SEED`: a fresh draw of the recipient's architecture from its own initialiser, seeded
  (re-randomisation); norms start as PyTorch builds them (running mean 0, variance 1).
"""

from __future__ import annotations

import torch

from reuse_console.engine.core.names import INIT_DONOR, RANDOM_DONOR, init_name
from reuse_console.engine.models.registry import build_model, checkpoint_path, rebuild_config
from reuse_console.engine.models.state_checks import check_finite
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

INIT, RANDOM = INIT_DONOR, RANDOM_DONOR


def donor_tensors(lab: Lab, donor: str, recipient: str, meta: CheckpointMeta) -> tuple[dict[str, torch.Tensor], str]:
    """The donor's state dict and architecture; `meta` is the recipient checkpoint's."""
    if donor == INIT:
        run = meta.run or recipient.removesuffix(".last")
        path = lab.path("checkpoints", init_name(run))
        if not path.exists():
            raise UserError(
                f"recipient {recipient!r} has no initial weights ({init_name(run)!r}: runs trained before they were "
                "kept, and imported checkpoints, have none): use --donor random:SEED for a fresh draw"
            )
        state, init_meta = read_checkpoint(path)
        return state, init_meta.arch
    if donor.startswith(RANDOM):
        seed_text = donor[len(RANDOM) :]
        if not seed_text.isdigit():
            raise UserError(f"donor {donor!r}: write random:SEED with a whole number, e.g. random:7")
        torch.manual_seed(int(seed_text))
        model = build_model(meta.arch, rebuild_config(meta.arch_config), trusted=False)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}, meta.arch
    state, donor_meta = read_checkpoint(checkpoint_path(lab, donor))
    check_finite(state, f"checkpoint {donor!r}")
    return state, donor_meta.arch
