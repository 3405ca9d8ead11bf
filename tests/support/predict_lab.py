"""Predictor and alignment test helpers: a scan with made-up but plausible Dice drops (the toy models
are untrained, so their own swaps lose no foreground Dice: each class's drop grows with the tensor's
relative RMSE), and a checkpoint's copy with every channel group permuted."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from reuse_console.engine.compare.matching import permute_state
from reuse_console.engine.compare.perm_spec import permutation_spec
from reuse_console.engine.models.registry import load_model, save_model
from reuse_console.engine.swaps.scan_lab import run_scan
from reuse_console.engine.swaps.scan_store import write_scan
from reuse_console.store.checkpoints import read_checkpoint
from reuse_console.store.lab import Lab


def scan_with_drops(lab: Lab, recipient: str, donor: str, name: str, layers: str = "1-6,head") -> Any:
    """Scan `recipient` <- `donor` on toy data, then store it as scan `name` with Dice made up from
    the relative RMSE of each swapped tensor, class-dependent and noisy (baseline about 0.85)."""
    scan = run_scan(lab, recipient, donor, "toy", layers=layers, device="cpu", name=f"{name}-raw")
    r_state, _ = read_checkpoint(lab.path("checkpoints", recipient))
    d_state, _ = read_checkpoint(lab.path("checkpoints", donor))
    rng = np.random.default_rng(0)
    rel = np.array(
        [
            float((r_state[k] - d_state[k]).double().pow(2).mean().sqrt())
            / (float(r_state[k].double().pow(2).mean().sqrt()) + 1e-12)
            for k in (v.keys[0] for v in scan.variants)
        ]
    )
    shape = scan.baseline.shape
    baseline = np.clip(0.85 + 0.05 * rng.normal(size=shape), 0, 1)
    drop = np.clip(0.1 * rel[:, None] / rel.max() * rng.uniform(0.5, 1.5, (len(rel), shape[1])), 0, 1)
    drop += np.clip(0.03 * rng.normal(size=drop.shape), 0, None)
    dice = baseline[None] - drop[:, None, :] + 0.01 * rng.normal(size=(len(rel), *shape))
    made = replace(scan, name=name, baseline=baseline, dice=dice)
    write_scan(lab.path("scans", name), made)
    return made


def permuted_copy(lab: Lab, ref: str, name: str, seed: int = 4) -> None:
    """Checkpoint `name`: `ref` with every channel group permuted at random (the same function)."""
    model, meta = load_model(lab, ref)
    spec = permutation_spec(model, torch.randn(1, 1, 64, 64))
    g = torch.Generator().manual_seed(seed)
    perms = {n: torch.randperm(group.size, generator=g) for n, group in spec.groups.items()}
    model.load_state_dict(permute_state(spec, model.state_dict(), perms))
    save_model(lab, name, model, meta)
