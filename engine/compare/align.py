"""Permutation alignment of a donor to a recipient (`reuse-console align`): same function, closest tensors.

Two networks trained from different seeds can compute the same function with their hidden
channels in another order; their raw per-layer RMSE then measures the order, not what was
learned. Alignment reorders the donor's channels, group by group (perm_spec.py finds the groups
in the model's fx graph), so its tensors come as close as possible to the recipient's
(matching.py: Git Re-Basin weight matching, or activation correlations on the validation
slices). Reordering never changes what the donor computes, and that is checked before anything
is written: both models run the validation slices in float64 and every output must agree within
1e-5. The result is a new checkpoint, usable by rmse, scan, swap and plan like any other; its
`extra["alignment"]` says what it is an alignment of, and `/extra/alignment/<group>/perm` keeps
each permutation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reuse_console.engine.compare.align_states import METHODS, TOLERANCE, align_states, output_difference
from reuse_console.engine.compare.matching import identity, permute_state
from reuse_console.engine.compare.perm_spec import PermSpec
from reuse_console.engine.compare.rmse import Comparison, compare_states
from reuse_console.engine.core.device import pick_device
from reuse_console.engine.core.events import Finished, Message, Reporter, silent
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.evaluation.evaluate import checkpoint_samples, eval_batches
from reuse_console.engine.models.layers import LayerIndex
from reuse_console.engine.models.registry import build_model, checkpoint_path, model_in_channels, rebuild_config
from reuse_console.engine.models.state_checks import check_finite
from reuse_console.engine.swaps.swap import check_compatible, in_model_order
from reuse_console.store.checkpoints import CheckpointMeta, read_checkpoint, write_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab, check_name

_TRAINING_ONLY = ("optimizer_groups", "grad_scaler")  # extra keys of a .last checkpoint that an alignment drops


@dataclass
class Alignment:
    """An aligned donor: its permutations, the check of its function, and its RMSE to the recipient."""

    name: str
    donor: str
    recipient: str
    method: str
    data: str
    seed: int
    spec: PermSpec
    perms: dict[str, torch.Tensor]
    sweeps: int
    max_difference: float
    seconds: float
    comparison: Comparison | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def moved(self) -> int:
        """Channels the alignment put somewhere else."""
        return int(sum((p != torch.arange(len(p))).sum() for p in self.perms.values()))

    def record(self) -> dict[str, Any]:
        """What the checkpoint's extra["alignment"] keeps (SCHEMA.md)."""
        return {
            "donor": self.donor,
            "recipient": self.recipient,
            "method": self.method,
            "data": self.data,
            "seed": self.seed,
            "sweeps": self.sweeps,
            "groups": len(self.spec.groups),
            "channels": int(sum(g.size for g in self.spec.groups.values())),
            "moved": self.moved(),
            "max_output_difference": self.max_difference,
            **self.info,
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, **self.record(), "seconds": round(self.seconds, 3)}
        out["group_sizes"] = {g: group.size for g, group in self.spec.groups.items()}
        if self.comparison is not None:
            c = self.comparison
            rows = []
            for li, layer in enumerate(c.layers):
                for ki, kind in enumerate(c.kinds):
                    raw, aligned = float(c.rmse[0, li, ki]), float(c.rmse[1, li, ki])
                    if raw == raw:  # not NaN: the layer has this kind
                        label = c.index[li] if c.index[li] is not None else layer
                        rows.append({"layer": label, "kind": kind, "rmse_raw": raw, "rmse_aligned": aligned})
            out["rmse"] = rows
        return out


def _load(lab: Lab, donor: str, recipient: str) -> tuple[nn.Module, CheckpointMeta, dict, dict]:
    """The architecture, the donor's metadata, and both state dicts (in the model's key order)."""
    if donor == recipient:
        raise UserError(f"the donor and the recipient are the same checkpoint ({donor}): nothing to align")
    r_state, r_meta = read_checkpoint(checkpoint_path(lab, recipient))
    d_state, d_meta = read_checkpoint(checkpoint_path(lab, donor))
    check_finite(r_state, f"checkpoint {recipient!r}")
    check_finite(d_state, f"checkpoint {donor!r}")
    names = (recipient, donor)
    if r_meta.arch != d_meta.arch:
        check_compatible(r_state, d_state, recipient_arch=r_meta.arch, donor_arch=d_meta.arch, names=names)
    model = build_model(d_meta.arch, rebuild_config(d_meta.arch_config), trusted=False)
    r_state, d_state = in_model_order(r_state, model), in_model_order(d_state, model)
    check_compatible(r_state, d_state, names=names)  # the first tensor that differs, in forward order
    if rebuild_config(r_meta.arch_config) != rebuild_config(d_meta.arch_config):
        raise UserError(f"{donor} and {recipient} have different arch configs: alignment needs one architecture")
    model.load_state_dict(d_state, strict=False)
    return model.eval(), d_meta, r_state, d_state


def _default_name(donor: str, recipient: str) -> str:
    stem = f"{Path(donor).name.removesuffix('.h5')}-to-{Path(recipient).name.removesuffix('.h5')}"
    return "".join(ch if ch.isalnum() or ch in "._+-" else "-" for ch in stem)[:90]


def run_align(
    lab: Lab,
    donor: str,
    recipient: str,
    *,
    data: str | None = None,
    name: str | None = None,
    method: str = "weights",
    seed: int = 0,
    device: str = "auto",
    batch: int = 32,
    split: str = "val",
    report: Reporter = silent,
) -> Alignment:
    """Align checkpoint `donor` to `recipient` and store the result as checkpoint `name`."""
    start = time.perf_counter()
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}: use {' or '.join(METHODS)}")
    if name is not None:
        check_name(name)
    model, d_meta, r_state, d_state = _load(lab, donor, recipient)
    data = data or d_meta.data
    if not data:
        raise UserError(f"checkpoint {donor!r} does not say which data set it was trained on: give --data")
    slices = checkpoint_samples(load_slices(lab, data), model, d_meta.extra)
    batches, subjects = eval_batches(slices, split, batch=batch)
    if not subjects:
        raise UserError(f"data set {data!r} has no {split} subjects to check the aligned model on")
    inputs = [b.images for b in batches]
    dev = pick_device(device)
    base = name or lab.unique_name("checkpoints", _default_name(donor, recipient))
    with lab.claim("checkpoints", base, new=True) as target:
        spec, perms, sweeps, info = align_states(
            model, r_state, d_state, inputs, method=method, seed=seed, report=report
        )
        aligned = permute_state(spec, d_state, perms or identity(spec.groups))
        worst = output_difference(model, d_state, aligned, inputs, dev)
        if not worst <= TOLERANCE:
            raise UserError(
                f"refused: the aligned {donor} differs from it by {worst:.3g} (> {TOLERANCE:g}) on the {split} slices "
                f"of {data}, so the permutation groups missed a channel dependency; nothing was written"
            )
        report(Message(f"checked: outputs equal the donor's within {worst:.2g} on {len(subjects)} {split} subjects"))
        result = Alignment(
            target.stem, donor, recipient, method, data, seed, spec, perms, sweeps, worst, 0.0, info=info
        )
        index = LayerIndex.from_model(model, model_in_channels(d_meta.arch_config), size=min(64, slices.size))
        three = compare_states([r_state, d_state, aligned], index.layers, models=[recipient, donor, target.stem])
        three.pairs, three.rmse, three.relative = three.pairs[:2], three.rmse[:2], three.relative[:2]
        result.comparison = three
        extra = {k: v for k, v in d_meta.extra.items() if k not in _TRAINING_ONLY}
        extra["alignment"] = result.record()
        meta = CheckpointMeta(
            arch=d_meta.arch,
            arch_config=d_meta.arch_config,
            task=d_meta.task,
            data=d_meta.data,
            classes=list(d_meta.classes),
            epoch=d_meta.epoch,
            metrics=dict(d_meta.metrics),  # the same function, so the same scores
            seed=d_meta.seed,
            extra=extra,
        )
        provenance = {"aligned": donor, "to": recipient, "method": method, "data": data, "seed": seed, "split": split}
        perm_tensors = {f"{g}.perm": p.to(torch.int64) for g, p in perms.items()}
        write_checkpoint(target, aligned, meta, provenance=provenance, extra_groups={"alignment": perm_tensors})
    result.seconds = time.perf_counter() - start
    report(Finished("align", result.name, result.seconds))
    return result
