"""Training throughput (images/s): our training loop against a plain PyTorch loop, same run.

Both train the same model (same config, same seeded initialisation) on the same slices with
the same batch size, loss (cross-entropy + soft Dice) and optimizer (Adam), without
augmentation in either. The plain loop is the textbook one:

    for x, y in DataLoader(TensorDataset(images, labels), batch, shuffle=True, drop_last=True):
        x, y = x.to(device), y.to(device)
        with autocast: out = model(x)
        loss = seg_loss(out, y); opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())

Ours is `engine.train.train` itself (run file, step rows, events, per-epoch validation and
checkpoints all on), timed by its own EpochEnd.images_per_s (the training part of each epoch).
The first epoch of each is warm-up and not counted; each side runs `--repeat` times,
interleaved, and the best is kept (the host may be shared). Prints a table and ratios;
target: ours/plain >= 1.0 at fp32.

    .venv/bin/python bench/train_throughput.py [--device auto] [--archs unet,pspnet] [--precisions fp32,bf16]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from reuse_console.engine.core.device import autocast, pick_device
from reuse_console.engine.core.events import EpochEnd, Event
from reuse_console.engine.data.slices import CARDIAC_CLASSES, SliceSet, write_slices
from reuse_console.engine.models.registry import build_model, default_config
from reuse_console.engine.training.losses import seg_loss
from reuse_console.engine.training.train import TrainSpec, train
from reuse_console.store.lab import Lab


def make_data(lab: Lab, n: int, size: int) -> SliceSet:
    """Random images with blob labels; content does not matter for throughput."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(n, size // 8, size // 8)).repeat(8, 1).repeat(8, 2).astype(np.uint8)
    images = (labels + rng.normal(0, 0.5, labels.shape)).astype(np.float32)
    subjects = max(2, n // 8)
    slices = SliceSet(
        name="bench",
        images=images,
        labels=labels,
        subject=(np.arange(n) % subjects).astype(np.int32),
        subjects=[f"s{i:03d}" for i in range(subjects)],
        split=["val"] + ["train"] * (subjects - 1),
        classes=list(CARDIAC_CLASSES),
        present=[True] * 4,
        spacing=(1.0, 1.0),
    )
    write_slices(lab.path("datasets", "bench"), slices, source={"format": "bench"})
    return slices


def plain_loop(
    slices: SliceSet, arch: str, config: dict, batch: int, epochs: int, device: torch.device, precision: str, seed: int
) -> float:
    """Images/s of the textbook loop (median over epochs 2..E)."""
    idx = np.flatnonzero(np.isin(slices.subject, slices.subjects_in("train")))
    data = torch.utils.data.TensorDataset(
        torch.from_numpy(slices.images[idx]).unsqueeze(1), torch.from_numpy(slices.labels[idx]).long()
    )
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    torch.manual_seed(seed)
    model = build_model(arch, config).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for _ in range(epochs):
        start, images, losses = time.perf_counter(), 0, []
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with autocast(device, precision):
                out = model(x)
            loss = seg_loss(out, y, [1, 2, 3])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            images += x.shape[0]
        rates.append(images / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def our_loop(
    lab: Lab, arch: str, overrides: dict, batch: int, epochs: int, device: str, precision: str, seed: int, tag: str
) -> float:
    """Images/s reported by engine.train (median over epochs 2..E)."""
    rates: list[float] = []

    def report(event: Event) -> None:
        if isinstance(event, EpochEnd):
            rates.append(event.images_per_s)

    spec = TrainSpec(
        data="bench",
        arch=arch,
        arch_config=overrides,
        task="seg",
        epochs=epochs,
        batch=batch,
        seed=seed,
        augment=False,
        name=tag,
    )
    train(lab, spec, device=device, precision=precision, workers=0, report=report)
    return statistics.median(rates[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--archs", default="unet,pspnet")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--size", type=int, default=None, help="pixels (default 128 on GPU, 64 on CPU)")
    ap.add_argument("--slices", type=int, default=None, help="slices (default 2048 on GPU, 160 on CPU)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3, help="per measurement; the first is warm-up")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--full-width", action="store_true", help="paper widths on CPU too (slow)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    size = args.size or (128 if gpu else 64)
    n = args.slices or (2048 if gpu else 160)
    small = not gpu and not args.full_width
    widths = {"unet": {"base_width": 8} if small else {}, "pspnet": {"width": 0.25} if small else {}}
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if gpu else 'cpu'}), torch threads "
        f"{torch.get_num_threads()}, {n} slices of {size}x{size}, batch {args.batch}, "
        f"{args.epochs} epochs x {args.repeat} repeats (first epoch warm-up)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab")
        slices = make_data(lab, n, size)
        k = 0
        for arch in args.archs.split(","):
            config = default_config(arch, 1, 4, **widths[arch])
            for precision in args.precisions.split(","):
                ours, plain = [], []
                for _ in range(args.repeat):
                    plain.append(plain_loop(slices, arch, config, args.batch, args.epochs, device, precision, 0))
                    k += 1
                    ours.append(
                        our_loop(
                            lab, arch, widths[arch], args.batch, args.epochs, str(device), precision, 0, f"bench-{k}"
                        )
                    )
                rows.append((arch, precision, max(plain), max(ours)))
                print(
                    f"  {arch:7s} {precision}: plain {max(plain):8.1f} img/s  ours {max(ours):8.1f} img/s", flush=True
                )
    print()
    print(f"{'arch':8s} {'precision':9s} {'plain img/s':>12s} {'ours img/s':>12s} {'ours/plain':>10s}")
    for arch, precision, plain, ours in rows:
        print(f"{arch:8s} {precision:9s} {plain:12.1f} {ours:12.1f} {ours / plain:10.2f}")
    fp32 = [o / p for a, pr, p, o in rows if pr == "fp32"]
    if fp32:
        verdict = "met" if min(fp32) >= 1.0 else "NOT met"
        print(f"\ntarget ours/plain >= 1.0 at fp32: {verdict} (min {min(fp32):.2f})")


if __name__ == "__main__":
    main()
