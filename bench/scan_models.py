"""Is the fast path taken, and how much faster than the naive loop is it, on built-in and third-party models?

`bench/scan.py --models unet,pspnet,monai-basicunet,smp-unet` runs this instead of the trained-model
benchmark: each model is built untrained (seeded, BN statistics and affines randomised so a swap
changes the output), with a donor of the same architecture, on random images labelled by the
recipient's own prediction. Every (layer, kind) variant of the layer index is scanned by
engine.swaps.scan.evaluate_variants; the naive loop (deepcopy, load_state_dict, full forward)
runs an evenly spread sample of them in a fresh process (the engine tunes malloc process-wide).
Printed per model: whether the fast path was taken (or why not), variants/s of both, the speedup
and the largest Dice difference on the sampled variants. Small by default (64 px, two batches).
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from reuse_console.engine.core.events import Message
from reuse_console.engine.evaluation.evaluate import EvalBatch
from reuse_console.engine.evaluation.metrics import DiceAccumulator
from reuse_console.engine.models.layers import KINDS, LayerIndex
from reuse_console.engine.models.layout import spatial_dims
from reuse_console.engine.swaps.scan import evaluate_variants
from reuse_console.engine.swaps.variants import Variant, plan_variants

CPU = torch.device("cpu")
MODELS = ("unet", "pspnet", "monai-basicunet", "smp-unet", "monai-dynunet", "tv-lraspp", "monai-unet3d")
DEPTH = 16  # slices per block of the 3D model
CLASSES = 3


def build(name: str, seed: int) -> nn.Module:
    """An untrained model with 1 input channel and 3 classes, its BN layers given varied tensors."""
    torch.manual_seed(seed)
    if name == "unet":
        from reuse_console.engine.models.unet import UNet

        model: nn.Module = UNet(1, CLASSES, base_width=8)
    elif name == "pspnet":
        from reuse_console.engine.models.pspnet import PSPNet

        model = PSPNet(1, CLASSES, width=0.25)
    elif name == "monai-basicunet":
        from monai.networks.nets import BasicUNet

        model = BasicUNet(
            spatial_dims=2, in_channels=1, out_channels=CLASSES, features=(8, 8, 16, 16, 32, 8), norm="batch"
        )
    elif name == "monai-unet3d":
        from monai.networks.nets import UNet

        model = UNet(3, 1, CLASSES, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch")
    elif name == "monai-dynunet":
        from monai.networks.nets import DynUNet

        model = DynUNet(2, 1, CLASSES, kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2])
    elif name == "tv-lraspp":
        from torchvision.models.segmentation import lraspp_mobilenet_v3_large

        from reuse_console.engine.models.adapters import IOAdapter, adapt

        tv = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES)
        model = adapt(tv, IOAdapter(input="repeat", channels=3))  # dict output, 3 channels: as train --input repeat
    elif name == "smp-unet":
        import segmentation_models_pytorch as smp

        model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=1, classes=CLASSES)
    else:
        raise SystemExit(f"unknown model {name!r}: choose from {', '.join(MODELS)}")
    return randomise_norms(model, seed)


def randomise_norms(model: nn.Module, seed: int) -> nn.Module:
    """Varied running statistics and affines in every batch norm (fresh ones are identities)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.3)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return model.eval()


def batches(model: nn.Module, size: int, count: int, per_batch: int) -> list[EvalBatch]:
    """Random images labelled by the recipient (a quarter of each replaced by noise); two subjects.

    A 3D model gets blocks of DEPTH slices, per_batch // DEPTH (at least 1) per batch."""
    g = torch.Generator().manual_seed(7)
    shape = (per_batch, size, size) if spatial_dims(model) == 2 else (max(1, per_batch // DEPTH), DEPTH, size, size)
    out = []
    for i in range(count):
        images = torch.randn(shape[0], 1, *shape[1:], generator=g)
        with torch.no_grad():
            labels = model(images).argmax(1)
        labels[..., : size // 4, :] = torch.randint(0, CLASSES, (*shape[:-2], size // 4, size), generator=g)
        per_batch = shape[0]
        out.append(EvalBatch(images, labels, torch.tensor([(i + j) % 2 for j in range(per_batch)])))
    return out


def variants(model: nn.Module, size: int) -> list[Variant]:
    return plan_variants(LayerIndex.from_model(model, 1, size=size).layers, KINDS, (1.0,))


def naive(name: str, size: int, count: int, per_batch: int, sample: list[int], threads: int) -> tuple[dict, float]:
    """In a fresh process: mean Dice per class of the sampled variants the obvious way, and the seconds spent."""
    torch.set_num_threads(threads)
    recipient, donor = build(name, 1), build(name, 2).state_dict()
    data = batches(recipient, size, count, per_batch)
    planned = variants(recipient, size)
    t0 = time.perf_counter()
    out = {}
    for i in sample:
        model = copy.deepcopy(recipient)
        state = model.state_dict()
        for key in planned[i].keys:
            state[key] = donor[key].clone()
        model.load_state_dict(state)
        acc = DiceAccumulator(CLASSES, 2)
        with torch.no_grad():
            for b in data:
                acc.update(model.eval()(b.images).argmax(1), b.labels, b.subject)
        out[i] = acc.per_subject().mean(axis=0)
    return out, time.perf_counter() - t0


def bench_model(
    name: str, *, size: int, count: int, per_batch: int, naive_variants: int, threads: int
) -> dict[str, Any]:
    recipient, donor = build(name, 1), build(name, 2)
    data = batches(recipient, size, count, per_batch)
    planned = variants(recipient, size)
    step = max(1, len(planned) // naive_variants)
    sample = list(range(0, len(planned), step))[:naive_variants]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        reference, naive_seconds = pool.apply(naive, (name, size, count, per_batch, sample, threads))
    said: list[str] = []
    t0 = time.perf_counter()
    _, dice, engine = evaluate_variants(
        recipient,
        donor.state_dict(),
        planned,
        data,
        classes=[str(c) for c in range(CLASSES)],
        present=[True] * CLASSES,
        num_subjects=2,
        device=CPU,
        report=lambda event: said.append(event.text) if isinstance(event, Message) else None,
    )
    seconds = time.perf_counter() - t0
    means = dice.mean(axis=1)
    naive_rate, rate = len(sample) / naive_seconds, len(planned) / seconds
    return {
        "model": name,
        "variants": len(planned),
        "fast": engine == "partial",
        "engine": engine,
        "kept": next((t.split("kept whole: ", 1)[1] for t in said if "kept whole: " in t), ""),
        "naive_rate": naive_rate,
        "rate": rate,
        "speedup": rate / naive_rate,
        "ddice": float(max(np.abs(means[i] - reference[i]).max() for i in sample)),
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def run(models: list[str], *, size: int, count: int, per_batch: int, naive_variants: int, threads: int) -> None:
    torch.set_num_threads(threads)
    print(f"CPU: {cpu_name()}, {threads} thread(s); {count} batches of {per_batch} slices at {size} px, fp32")
    rows = []
    for name in models:
        t0 = time.perf_counter()
        rows.append(
            bench_model(
                name, size=size, count=count, per_batch=per_batch, naive_variants=naive_variants, threads=threads
            )
        )
        print(f"  {name}: done in {time.perf_counter() - t0:.0f} s")
    print(
        f"\n{'model':16} {'variants':>8} {'fast path':>9} {'naive var/s':>11} {'engine var/s':>12} {'speedup':>8} {'max|dDice|':>11}"
    )
    for r in rows:
        print(
            f"{r['model']:16} {r['variants']:>8} {'yes' if r['fast'] else 'no':>9} {r['naive_rate']:>11.2f} "
            f"{r['rate']:>12.2f} {r['speedup']:>7.2f}x {r['ddice']:>11.2e}"
        )
    for r in rows:
        if not r["fast"]:
            print(f"{r['model']}: {r['engine']}")
        elif r["kept"]:
            print(f"{r['model']}: modules kept whole (their own code traces wrongly): {r['kept']}")
