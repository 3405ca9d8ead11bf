"""Transfer: start a new model from a donor's reusable tensors, then freeze or fine-tune them.

`transfer_init` reads a plan and a donor checkpoint and returns the plan's tensors (the new
model's initial values for those keys) and, in mode `freeze`, the keys to keep fixed.
`freeze` keeps them fixed during training, for real rather than by undoing updates:

- a frozen parameter (W, B, RW, RB) gets `requires_grad = False`, so backward computes no
  gradient for it and the optimizer (which skips parameters without a gradient) never moves it,
  weight decay and momentum included;
- a frozen running statistic (RM, RV) would still be updated by its norm in train mode (the
  forward itself blends in the batch statistics; BatchNorm, SyncBatchNorm and InstanceNorm with
  track_running_stats alike), so hooks on that norm hand it a scratch copy for each train-mode
  forward and put the untouched tensor back afterwards. Train-mode normalisation uses the batch
  (or instance) statistics, not the running ones, so nothing else changes; eval mode then uses
  the frozen values. (GroupNorm and LayerNorm keep no statistics: only their RW, RB exist.) (Copying saved values back after the forward instead would
  trip autograd, which keeps the running statistics for BN's backward.)

tests/engine/test_transfer.py proves every frozen tensor bit-identical after training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from reuse_console.engine.models.layers import keeps_running_stats
from reuse_console.engine.models.registry import checkpoint_path
from reuse_console.engine.models.state_checks import check_finite
from reuse_console.engine.reuse.controls import check_control, meanvar, needs_donor
from reuse_console.engine.reuse.plans import load_plan
from reuse_console.store.checkpoints import read_checkpoint, read_meta
from reuse_console.store.errors import UserError
from reuse_console.store.lab import Lab

MODES = ("freeze", "finetune")
_STATS = ("running_mean", "running_var")


def check_mode(mode: str | None) -> str:
    if mode not in MODES:
        raise UserError(
            f"unknown --mode {mode!r}: use freeze (keep the donor's tensors fixed) or finetune (train them)"
        )
    return mode


def donor_tensors(lab: Lab, donor: str, plan: Any, *, arch: str = "") -> dict[str, torch.Tensor]:
    """The donor checkpoint's tensors named by the plan's reusable set (checked against the plan)."""
    state, meta = read_checkpoint(checkpoint_path(lab, donor))
    if arch and meta.arch != arch:
        raise UserError(
            f"donor {donor!r} is a {meta.arch}, the new model a {arch}: transfer needs the same architecture"
        )
    if plan.arch and meta.arch != plan.arch:
        raise UserError(f"plan {plan.name!r} was made for {plan.arch}, donor {donor!r} is a {meta.arch}")
    out: dict[str, torch.Tensor] = {}
    for t in plan.tensors:
        if not t.reusable:
            continue
        if t.key not in state:
            raise UserError(f"donor {donor!r} has no tensor {t.key} (plan {plan.name!r}, layer {t.layer} {t.kind})")
        value = state[t.key]
        if t.numel and value.numel() != t.numel:
            raise UserError(
                f"donor {donor!r} tensor {t.key} has {value.numel()} elements, plan {plan.name!r} expects {t.numel}"
            )
        out[t.key] = value
    check_finite(out, f"donor {donor!r}")
    return out


def transfer_init(lab: Lab, spec: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """For a TrainSpec with `init` (donor) and `plan`: the donor's tensors, and the spec with the
    keys to freeze added to `frozen` in mode freeze."""
    control = check_control(getattr(spec, "control", None))
    if not spec.init and needs_donor(control):
        raise UserError("--plan PLAN needs --init DONOR (the checkpoint whose tensors the plan names)")
    if not spec.plan:
        raise UserError("--init DONOR needs --plan PLAN (which tensors to take; see `reuse-console plan --help`)")
    mode = check_mode(spec.mode or "finetune")
    plan = load_plan(lab, spec.plan)
    if plan.arch and plan.arch != spec.arch:
        raise UserError(f"plan {plan.name!r} was made for {plan.arch}, not {spec.arch}")
    if control == "reinit":  # the model's own seeded initial values: nothing to load, only to freeze
        state = {}
        keys = plan.keys()
    else:
        state = donor_tensors(lab, spec.init, plan, arch=spec.arch)
        keys = list(state)
        if control in ("meanvar", "meanvar-channel"):
            state = meanvar(state, spec.seed, per_channel=control == "meanvar-channel")
    frozen = list(spec.frozen)
    if mode == "freeze":
        frozen += [k for k in keys if k not in frozen]
    return replace(spec, mode=mode, frozen=frozen), state


def check_fits(lab: Lab, spec: Any, model: nn.Module, state: Mapping[str, torch.Tensor], classes: list[str]) -> None:
    """Say why a donor's tensor does not fit the new model: the data set's classes differ from the
    donor's (a reused output layer), or the model was built with other arch options than the donor."""
    import json

    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if not bad:
        return
    key = bad[0]
    meta = read_meta(checkpoint_path(lab, spec.init))
    theirs, ours = tuple(state[key].shape), tuple(own[key].shape)
    if list(meta.classes) != list(classes) and theirs[:1] == (len(meta.classes),) and ours[:1] == (len(classes),):
        raise UserError(
            f"plan {spec.plan!r} reuses {key} of donor {spec.init!r}, made for its {len(meta.classes)} classes "
            f"({', '.join(meta.classes)}), but data set {spec.data!r} has {len(classes)} ({', '.join(classes)}): "
            "leave that layer out of the plan (plan export, edit, plan import)"
        )
    options = {k: v for k, v in meta.arch_config.items() if k not in ("in_channels", "out_channels")}
    raise UserError(
        f"donor {spec.init!r} tensor {key} has shape {theirs}, the new {spec.arch} {ours}: build it like the donor, "
        f"--arch-config '{json.dumps(options, sort_keys=True)}'"
    )


@dataclass
class Frozen:
    """Handle of a freeze: the parameters it froze and the norm hooks restoring running stats."""

    params: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    _hooks: list[Any] = field(default_factory=list, repr=False)

    def remove(self) -> None:
        """Undo the freeze (parameters train again, running statistics update again)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def freeze(model: nn.Module, keys: Iterable[str]) -> Frozen:
    """Keep the model's tensors `keys` (state-dict keys) fixed through training; see the module doc."""
    keys = list(dict.fromkeys(keys))
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    handle = Frozen()
    stats: dict[str, list[str]] = {}
    for key in keys:
        if key in params:
            params[key].requires_grad_(False)
            handle.params.append(key)
            continue
        owner, _, leaf = key.rpartition(".")
        module = modules.get(owner)
        if module is not None and keeps_running_stats(module) and leaf in _STATS:
            stats.setdefault(owner, []).append(leaf)
            handle.stats.append(key)
            continue
        raise UserError(f"cannot freeze {key}: it is neither a parameter nor a norm's running statistic of this model")
    for owner, leaves in stats.items():
        before, after = _stat_guard(leaves)
        handle._hooks.append(modules[owner].register_forward_pre_hook(before))
        handle._hooks.append(modules[owner].register_forward_hook(after))
    return handle


def _stat_guard(leaves: list[str]):
    """Forward pre/post hooks that let a train-mode BN update a scratch copy of `leaves`.

    Before the forward the frozen buffer is set aside and a copy takes its place (BN updates
    the copy in place, and autograd may keep it for backward); after the forward the frozen
    buffer, never written, is put back. Eval-mode forwards read the frozen buffer directly.
    """
    kept: dict[str, torch.Tensor] = {}

    def before(mod: nn.Module, _inputs: Any) -> None:
        after(mod, None, None)  # a forward that raised never ran `after`: put the frozen buffers back first
        if mod.training:
            for leaf in leaves:
                kept[leaf] = getattr(mod, leaf)
                setattr(mod, leaf, kept[leaf].detach().clone())

    def after(mod: nn.Module, _inputs: Any, _output: Any) -> None:
        for leaf, value in kept.items():
            setattr(mod, leaf, value)
        kept.clear()

    return before, after


def load_tensors(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy `state` into the model's tensors (keys and element counts must match)."""
    own = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key not in own:
                raise UserError(f"the model has no tensor {key}")
            if own[key].shape != value.shape:
                raise UserError(
                    f"tensor {key}: shape {tuple(value.shape)} given, the model has {tuple(own[key].shape)}"
                )
            own[key].copy_(value)
