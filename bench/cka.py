"""Does `reuse-console cka` stream in bounded memory, and what does it cost against the naive way?

One run, same 5 untrained UNets (base width 8, seeds 0-4) and 500 validation slices (64 px blobs):
  naive      every model's activation after every layer (23 per UNet) for every slice held in
             memory (float32, as the forward gives them), then per layer the per-slice features
             (spatial mean), n x n Gram matrices and the papers' HSIC with the centering matrix H.
  streamed   engine.compare.cka_lab.run_cka: hooks reduce each batch's activations to features and
             fold them into feature-space statistics (channels^2 per pair and layer), then drop them.
  streamed pixels   the same with --features pixels (64 positions per slice).
Each runs in a fresh process; peak RSS is ru_maxrss of that process, "above start" subtracts its
RSS once the models and slices are loaded (what the measurement itself added). The streamed run at
100 slices shows its peak does not grow with the slices. Max |difference| of the streamed linear and
debiased CKA from the naive ones is printed too.

    .venv/bin/python bench/cka.py [--slices 500] [--size 64] [--width 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MODELS = 5


def cpu_name() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_lab(root: Path, slices: int, size: int, width: int) -> list[str]:
    """A data set of `slices` validation slices (bright discs in noise) and 5 untrained UNets."""
    import torch

    from reuse_console.engine.data.slices import SliceSet, write_slices
    from reuse_console.engine.models.registry import build_model, default_config, save_model
    from reuse_console.store.checkpoints import CheckpointMeta
    from reuse_console.store.lab import Lab

    lab = Lab(root)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(0, 0.3, (slices, size, size)).astype(np.float32)
    labels = np.zeros((slices, size, size), np.uint8)
    for i in range(slices):
        cy, cx = rng.uniform(0.3, 0.7, 2) * size
        disc = np.hypot(yy - cy, xx - cx) < rng.uniform(0.08, 0.2) * size
        labels[i][disc] = 3
        images[i][disc] += 1.5
    per = 10
    subjects = slices // per
    data = SliceSet(
        name="blobs",
        images=images,
        labels=labels,
        subject=np.repeat(np.arange(subjects, dtype=np.int32), per),
        subjects=[f"s{i:03d}" for i in range(subjects)],
        split=["val"] * subjects,
        classes=["background", "RV", "MYO", "LV"],
        present=[True] * 4,
        spacing=(1.5, 1.5),
    )
    write_slices(lab.path("datasets", "blobs"), data, source={"format": "bench"})
    names = []
    for seed in range(MODELS):
        torch.manual_seed(seed)
        config = default_config("unet", 1, 4, base_width=width)
        meta = CheckpointMeta(arch="unet", arch_config=config, task="seg", data="blobs", extra={"size": size})
        save_model(lab, f"unet{seed}", build_model("unet", config), meta)
        names.append(f"unet{seed}")
    return names


def hsic(k: np.ndarray, m: np.ndarray, unbiased: bool) -> float:
    n = k.shape[0]
    if not unbiased:
        h = np.eye(n) - 1.0 / n
        return float(np.trace(k @ h @ m @ h))
    k, m = k.copy(), m.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(m, 0.0)
    one = np.ones(n)
    return float(
        np.trace(k @ m) + one @ k @ one * (one @ m @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ k @ m @ one)
    ) / (n * (n - 3))


def naive(root: Path, names: list[str]) -> dict[str, Any]:
    """Every activation of every model in memory, then CKA per layer from n x n Gram matrices."""
    import torch

    from reuse_console.engine.compare.cka_lab import load_models
    from reuse_console.engine.compare.features import hooked_module
    from reuse_console.engine.data.slices import load_slices
    from reuse_console.engine.evaluation.evaluate import eval_batches
    from reuse_console.store.lab import Lab

    lab = Lab(root)
    models = load_models(lab, names, "all", torch.device("cpu"))
    batches, _ = eval_batches(load_slices(lab, "blobs"), "val", batch=32)
    start_rss = rss_mb()
    t0 = time.perf_counter()
    held: list[list[list[torch.Tensor]]] = []
    for model, layers in zip(models.models, models.per_model):
        acts: list[list[torch.Tensor]] = [[] for _ in layers]
        modules = dict(model.named_modules())
        handles = [
            modules[hooked_module(layer)].register_forward_hook(lambda _m, _i, o, a=acts[i]: a.append(o.clone()))
            for i, layer in enumerate(layers)
        ]
        with torch.inference_mode():
            for b in batches:
                model(b.images.contiguous(memory_format=torch.channels_last))
        for handle in handles:
            handle.remove()
        held.append(acts)
    pairs = [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))]
    linear = np.zeros((len(pairs), len(models.layers)))
    debiased = np.zeros_like(linear)
    for li in range(len(models.layers)):
        grams = []
        for m in range(len(names)):
            x = torch.cat(held[m][li]).double().flatten(2).mean(dim=2).numpy()
            x = x - x.mean(axis=0)  # translation changes no HSIC; keeps the float64 Gram exact
            grams.append(x @ x.T)
        for unbiased, out in ((False, linear), (True, debiased)):
            self_h = [hsic(g, g, unbiased) for g in grams]
            for p, (a, b) in enumerate(pairs):
                out[p, li] = hsic(grams[a], grams[b], unbiased) / np.sqrt(self_h[a] * self_h[b])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mb": peak_mb(), "start_mb": start_rss, "linear": linear, "debiased": debiased}


def streamed(root: Path, names: list[str], features: str) -> dict[str, Any]:
    import torch

    from reuse_console.engine.compare.cka_lab import run_cka
    from reuse_console.engine.data.slices import load_slices
    from reuse_console.store.lab import Lab

    lab = Lab(root)
    # what run_cka loads before it measures, so "above start" is the measurement alone
    load_slices(lab, "blobs")
    from reuse_console.engine.compare.cka_lab import load_models

    load_models(lab, names, "all", torch.device("cpu"))
    start_rss = rss_mb()
    sim = run_cka(lab, names, "blobs", features=features, device="cpu", name=f"bench-{features}-{time.time_ns()}")
    return {
        "seconds": sim.seconds,  # the measurement, as naive's: loading and writing the file left out
        "peak_mb": peak_mb(),
        "start_mb": start_rss,
        "linear": sim.linear,
        "debiased": sim.debiased,
        "passes": sim.passes,
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    names = [f"unet{i}" for i in range(MODELS)]
    root = Path(args.lab)
    out = naive(root, names) if args.child == "naive" else streamed(root, names, args.child.split("-", 1)[1])
    print(json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in out.items()}))


def run_child(mode: str, lab: Path, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, "--lab", str(lab), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lab", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"CPU: {cpu_name()}; torch threads {args.threads}")
    print(f"{MODELS} untrained UNets (base width {args.width}), {args.slices} slices at {args.size} px, 23 layers")
    with tempfile.TemporaryDirectory() as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        make_lab(small, 100, args.size, args.width)
        make_lab(big, args.slices, args.size, args.width)
        runs = {
            f"naive ({args.slices} slices)": run_child("naive", big, args.threads),
            f"streamed pooled ({args.slices})": run_child("streamed-pooled", big, args.threads),
            "streamed pooled (100)": run_child("streamed-pooled", small, args.threads),
            f"streamed pixels ({args.slices})": run_child("streamed-pixels", big, args.threads),
        }
    naive_run = runs[f"naive ({args.slices} slices)"]
    print(f"{'run':<26}{'seconds':>9}{'peak RSS MB':>13}{'above start':>13}{'vs naive':>10}")
    for label, r in runs.items():
        above = r["peak_mb"] - r["start_mb"]
        ratio = (naive_run["peak_mb"] - naive_run["start_mb"]) / above if above > 0 else float("inf")
        print(f"{label:<26}{r['seconds']:>9.2f}{r['peak_mb']:>13.0f}{above:>13.0f}{ratio:>9.1f}x")
    stream = runs[f"streamed pooled ({args.slices})"]
    for key in ("linear", "debiased"):
        diff = np.nanmax(np.abs(np.asarray(stream[key]) - np.asarray(naive_run[key])))
        print(f"max |streamed - naive| {key} CKA: {diff:.2e}")
    print(
        f"time streamed / naive: {stream['seconds'] / naive_run['seconds']:.2f}; "
        f"peak RSS naive / streamed: {naive_run['peak_mb'] / stream['peak_mb']:.1f}x"
    )


if __name__ == "__main__":
    main()
