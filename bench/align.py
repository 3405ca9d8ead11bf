"""How fast is alignment of a UNet-32 (and a PSPNet) pair? Target: under 10 s on 2 CPU cores.

Two models of one architecture from different seeds (BN statistics and affine parameters made
distinct per channel, as training makes them), then, in the same run:
  forward     one forward pass of the model on a batch of 8 slices of 128 x 128 (fp32): the unit
              a scan pays per batch, to read the alignment time against
  groups      permutation_spec: fx trace, the check that the trace runs like the model, the walk
  weights     weight matching (engine.compare.matching.weight_matching): tensors laid out once per
              place a group permutes, one gather + one product per solve, and a group re-solved
              only when a group it shares a tensor with has moved since its last solve
              (started from trusted_start); "from the identity": the same sweeps from the identity
  naive       the sweeps from the identity written the straightforward way: every group solved every
              sweep, the whole donor state re-permuted before each solve (same result, checked)
  check       the function check run_align does before writing: both models in float64 on the batch
and prints the times, the ratios, the sweeps and the CPU.

    .venv/bin/python bench/align.py [--threads 2] [--arch unet|pspnet|both]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

import numpy as np
import torch
from scan_models import cpu_name
from torch import nn

from reuse_console.engine.compare.align_states import output_difference
from reuse_console.engine.compare.matching import assign, permute_state, weight_matching
from reuse_console.engine.compare.perm_spec import PermSpec, permutation_spec
from reuse_console.engine.models.registry import build_model, default_config


def trained_like(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    config = default_config(arch, 1, 4) if arch == "unet" else default_config(arch, 1, 4, width=1.0)
    model = build_model(arch, config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def naive_matching(
    spec: PermSpec, recipient: Mapping[str, torch.Tensor], donor: Mapping[str, torch.Tensor], seed: int = 0
) -> tuple[dict[str, torch.Tensor], int]:
    """The reference: before each group's solve, permute the whole donor state, then undo this group's axis."""
    r = {k: recipient[k].float() for k in spec.axes}
    d = {k: donor[k].float() for k in spec.axes}
    perms = {g: torch.arange(group.size) for g, group in spec.groups.items()}
    names = list(spec.groups)
    rng = np.random.default_rng(seed)
    for sweep in range(1, 101):
        improved = 0
        for i in rng.permutation(len(names)):
            g = names[i]
            n = spec.groups[g].size
            others = dict(perms)
            others[g] = torch.arange(n)
            permuted = permute_state(spec, d, others)
            score = torch.zeros((n, n), dtype=torch.float64)
            for key, axis, seg in spec.occurrences(g):
                a = r[key].narrow(axis, seg.start, n).movedim(axis, 0).reshape(n, -1)
                b = permuted[key].narrow(axis, seg.start, n).movedim(axis, 0).reshape(n, -1)
                score += (a @ b.T).double()
            s = score.numpy()
            new = assign(s, spec.groups[g].blocks)
            rows = np.arange(n)
            old_value, new_value = s[rows, perms[g].numpy()].sum(), s[rows, new].sum()
            if new_value > old_value + 1e-9 * max(1.0, abs(old_value)):
                perms[g] = torch.from_numpy(new)
                improved += 1
        if not improved:
            return perms, sweep
    return perms, 100


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench(arch: str) -> None:
    recipient, donor = trained_like(arch, 1), trained_like(arch, 2)
    x = torch.randn(8, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        recipient(x)  # warm-up
        _, forward = timed(recipient, x)
    spec, t_spec = timed(permutation_spec, donor, x[:1])
    r_state, d_state = recipient.state_dict(), donor.state_dict()
    result, t_weights = timed(weight_matching, spec, r_state, d_state, seed=0)
    (naive_perms, naive_sweeps), t_naive = timed(naive_matching, spec, r_state, d_state, seed=0)
    textbook, t_textbook = timed(weight_matching, spec, r_state, d_state, seed=0, start="identity")
    same = all(torch.equal(textbook.perms[g], naive_perms[g]) for g in spec.groups)
    aligned = permute_state(spec, d_state, result.perms)
    gap, t_check = timed(output_difference, donor, d_state, aligned, [x], torch.device("cpu"))
    params = sum(p.numel() for p in donor.parameters())
    channels = sum(g.size for g in spec.groups.values())
    total = t_spec + t_weights + t_check
    print(f"{arch}: {params / 1e6:.1f} M parameters, {len(spec.groups)} groups, {channels} channels")
    print(f"  forward (8 x 128^2, fp32)  {forward:7.3f} s")
    print(f"  groups (fx analysis)       {t_spec:7.3f} s")
    print(
        f"  weight matching            {t_weights:7.3f} s  ({result.sweeps} sweeps, objective {result.objective_after:.1f})"
    )
    print(
        f"  from the identity          {t_textbook:7.3f} s  ({textbook.sweeps} sweeps, objective {textbook.objective_after:.1f})"
    )
    print(f"  naive matching             {t_naive:7.3f} s  ({naive_sweeps} sweeps, same as from the identity: {same})")
    print(f"  check (float64, 8 slices)  {t_check:7.3f} s  (max |output difference| {gap:.1e})")
    print(
        f"  alignment total            {total:7.3f} s = {total / forward:.1f} forward passes; "
        f"matching {t_naive / t_weights:.1f}x faster than naive ({t_naive / t_textbook:.1f}x from the identity); target < 10 s: {'met' if total < 10 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arch", choices=("unet", "pspnet", "both"), default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}; torch {torch.__version__}")
    for arch in ("unet", "pspnet") if args.arch == "both" else (args.arch,):
        bench(arch)


if __name__ == "__main__":
    main()
