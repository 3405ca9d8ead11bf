"""3D training throughput: a MONAI 3D UNet trained by our loop against a plain PyTorch loop, same run.

Both train the same model (same config and seeded initialisation) on the same blocks of 16
slices (each subject one volume of 16 slices, so no padding), batch 2 blocks, cross-entropy +
soft Dice, Adam, no augmentation. The plain loop is the textbook one with no layout change:

    for x, y in DataLoader(TensorDataset(blocks, labels), 2, shuffle=True, drop_last=True):
        loss = seg_loss(model(x), y); opt.zero_grad(); loss.backward(); opt.step(); loss.item()

Ours is `engine.training.train.train` with --depth 16 (channels_last_3d, run file, events,
validation and checkpoints on), timed by its own EpochEnd.images_per_s (blocks/s). The first
epoch of each is warm-up; each side runs `--repeat` times, interleaved, the best is kept.
Prints blocks/s, slices/s and ours/plain, with the CPU's name.

    .venv/bin/python bench/train_3d.py [--size 64] [--subjects 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scan_models import cpu_name

from reuse_console.engine.core.events import EpochEnd, Event
from reuse_console.engine.data.slices import CARDIAC_CLASSES, SliceSet, write_slices
from reuse_console.engine.models.registry import build_model
from reuse_console.engine.training.losses import seg_loss
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.lab import Lab

ARCH = "monai.networks.nets:UNet"
CONFIG = {"spatial_dims": 3, "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
DEPTH = 16


def make_data(lab: Lab, subjects: int, size: int) -> SliceSet:
    """Blob labels, noisy images; every subject one volume of DEPTH slices; the first for validation."""
    rng = np.random.default_rng(0)
    n = subjects * DEPTH
    labels = rng.integers(0, 4, size=(n, size // 8, size // 8)).repeat(8, 1).repeat(8, 2).astype(np.uint8)
    images = (labels + rng.normal(0, 0.5, labels.shape)).astype(np.float32)
    slices = SliceSet(
        name="bench3d",
        images=images,
        labels=labels,
        subject=(np.arange(n) // DEPTH).astype(np.int32),
        subjects=[f"s{i:03d}" for i in range(subjects)],
        split=["val"] + ["train"] * (subjects - 1),
        classes=list(CARDIAC_CLASSES),
        present=[True] * 4,
        spacing=(1.0, 1.0),
    )
    write_slices(lab.path("datasets", "bench3d"), slices, source={"format": "bench"})
    return slices


def plain_loop(slices: SliceSet, config: dict, epochs: int) -> float:
    """Blocks/s of the textbook loop (median over epochs 2..E)."""
    train_idx = np.flatnonzero(slices.subject > 0)
    h = slices.size
    blocks = torch.from_numpy(slices.images[train_idx]).reshape(-1, 1, DEPTH, h, h)
    labels = torch.from_numpy(slices.labels[train_idx]).reshape(-1, DEPTH, h, h).long()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(blocks, labels), batch_size=2, shuffle=True, drop_last=True
    )
    torch.manual_seed(0)
    model = build_model(ARCH, config).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for x, y in loader:
            loss = seg_loss(model(x), y, [1, 2, 3])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            count += x.shape[0]
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def our_loop(lab: Lab, epochs: int, tag: str) -> float:
    """Blocks/s reported by engine.train (median over epochs 2..E)."""
    rates: list[float] = []

    def report(event: Event) -> None:
        if isinstance(event, EpochEnd):
            rates.append(event.images_per_s)

    spec = TrainSpec(
        data="bench3d", arch=ARCH, arch_config=dict(CONFIG), epochs=epochs, batch=2 * DEPTH, depth=DEPTH,
        augment=False, name=tag,
    )  # fmt: skip
    train(lab, spec, device="cpu", precision="fp32", workers=0, report=report)
    return statistics.median(rates[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=3, help="per measurement; the first is warm-up")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU: {cpu_name()}, {args.threads} thread(s); MONAI 3D UNet {CONFIG['channels']}, blocks of "
        f"{DEPTH}x{args.size}x{args.size}, {args.subjects - 1} training blocks, batch 2, fp32"
    )
    ours, plain = [], []
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab")
        slices = make_data(lab, args.subjects, args.size)
        config = {**CONFIG, "in_channels": 1, "out_channels": 4}
        for k in range(args.repeat):
            plain.append(plain_loop(slices, config, args.epochs))
            ours.append(our_loop(lab, args.epochs, f"bench3d-{k}"))
    p, o = max(plain), max(ours)
    print(f"\n{'loop':24s} {'blocks/s':>9s} {'slices/s':>9s}")
    print(f"{'plain (contiguous)':24s} {p:9.2f} {p * DEPTH:9.1f}")
    print(f"{'ours (channels_last_3d)':24s} {o:9.2f} {o * DEPTH:9.1f}")
    print(f"\nours/plain: {o / p:.2f}x")


if __name__ == "__main__":
    main()
