"""The epoch loop of one training run: data, model, optimizer, validation, run rows and checkpoints.

`engine/training/train.py` decides what a run is (new, resumed, restarted); a `TrainSession` trains it.
Every random draw after the model's initialisation is derived from (seed, epoch, sample), so a
session resumed after epoch k ends where an uninterrupted one does, bit for bit (on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from reuse_console.engine.core.device import autocast, check_precision, memory_format, memory_mb, pick_device
from reuse_console.engine.core.events import EpochEnd, Finished, Message, Reporter, Started, StepEnd
from reuse_console.engine.core.names import init_name
from reuse_console.engine.data.augment import AugmentConfig, derived_generator
from reuse_console.engine.data.batches import (
    TrainBatches,
    model_samples,
    pick_subjects,
    resize_slices,
    slices_per_sample,
)
from reuse_console.engine.data.slices import load_slices
from reuse_console.engine.data.volumes import sample_depth
from reuse_console.engine.evaluation.evaluate import eval_batches, evaluate_ae, evaluate_seg
from reuse_console.engine.models.adapters import ADAPTER_KEY, Expect, IOAdapter, class_name, probe
from reuse_console.engine.models.layout import spatial_dims, with_layout
from reuse_console.engine.models.norm_stats import recalibrate
from reuse_console.engine.models.registry import BUILTIN, build_model, channel_config_keys, default_config
from reuse_console.engine.reuse.transfer import check_fits, freeze
from reuse_console.engine.training.checkpoints import save_epoch
from reuse_console.engine.training.losses import ae_loss, deep_supervision_loss, dice_classes, seg_loss
from reuse_console.engine.training.spec import TrainResult, TrainSpec, default_workers, last_name
from reuse_console.store.checkpoints import CheckpointMeta, write_checkpoint
from reuse_console.store.errors import UserError
from reuse_console.store.h5 import disk_full
from reuse_console.store.lab import Lab

STEP_FLUSH_S = 0.5  # how often step losses are read back from the device and reported


def load_partial(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the given tensors into the model; every key and shape must match."""
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            raise UserError(f"initial tensor {key!r} is not in this model")
        if tuple(own[key].shape) != tuple(value.shape):
            raise UserError(f"initial tensor {key!r} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)


class TrainSession:
    """One run in progress: data, model, optimizer, and the epoch loop."""

    def __init__(
        self, lab: Lab, spec: TrainSpec, slices: Any, device: torch.device, precision: str, workers: int
    ) -> None:
        self.lab, self.spec, self.slices = lab, spec, slices
        self.device, self.precision, self.workers = device, precision, workers
        self.name: str = spec.name or ""
        self.model_class: str | None = None  # a user model's class name (default run names), set by build_model
        self.train_subjects = pick_subjects(slices, spec.subjects, spec.seed)
        self.val_subjects = [slices.subjects[i] for i in slices.subjects_in("val")]
        self.dice_classes = dice_classes(slices.present)
        self.depth: int | None = None  # a 3D model's block depth (engine/data/volumes.py), set with the model
        self.initial_state: dict[str, torch.Tensor] | None = None  # seeded weights before any donor's (`.init`)

    def _sample_depth(self, model: nn.Module) -> int | None:
        """The block depth a 3D model trains on (the spec's, or whole volumes); None for a 2D model."""
        return sample_depth(self.slices, self.spec.depth) if spatial_dims(model) == 3 else None

    def _make_batches(self) -> None:
        """Training and validation batches of what the model takes: slices, or blocks of `depth`."""
        spec = self.spec
        samples = model_samples(self.slices, size=None, depth=self.depth, dims=3 if self.depth else 2)
        augment = AugmentConfig() if spec.augment else AugmentConfig.off()
        self.batches = TrainBatches(
            samples,
            samples.slice_indices("train", self.train_subjects),
            batch=spec.batch,
            seed=spec.seed,
            augment=augment,
            device=self.device,
            workers=self.workers,
        )
        self.val_batches, _ = eval_batches(samples, "val", batch=max(spec.batch, 32))

    @classmethod
    def open(cls, lab: Lab, spec: TrainSpec, *, device: str, precision: str, workers: int | None) -> TrainSession:
        dev = pick_device(device)
        prec = check_precision(precision, dev)
        slices = load_slices(lab, spec.data)
        if spec.size is not None:
            slices = resize_slices(slices, spec.size)
        if workers is None:
            workers = default_workers(dev.type)
        if workers < 0:
            raise UserError(f"--workers must be 0 or more (got {workers})")
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return cls(lab, spec, slices, dev, prec, workers)

    def build_model(self, init_state: Mapping[str, torch.Tensor] | None = None) -> None:
        """Build the run's model as epoch 0 has it (seeded, then `init_state`) and attach it.

        Deterministic: `train` and a restart of a run killed before its first checkpoint both call it."""
        spec = self.spec
        overrides = dict(spec.arch_config)
        io = IOAdapter.from_config(overrides.pop(ADAPTER_KEY, None))  # a donor's, when --init gave the arch
        io = IOAdapter(
            input=spec.input if spec.input != "as-is" else io.input,
            output=spec.output or io.output,
            deep_supervision=spec.deep_supervision or io.deep_supervision,
        )
        io.check()
        classes = len(self.slices.classes)
        config = default_config(spec.arch, 1, classes, **overrides)
        torch.manual_seed(spec.seed)
        model = build_model(spec.arch, config)
        in_key, out_key = channel_config_keys(spec.arch)
        self.depth = self._sample_depth(model)
        expect = Expect(
            arch=spec.arch, size=self.slices.size, classes=classes, in_key=in_key, out_key=out_key, depth=self.depth
        )
        io = probe(model, io, expect)  # one line and no run file for a model that cannot work
        if spec.arch not in BUILTIN or io != IOAdapter():
            config[ADAPTER_KEY] = io.to_config()
        self.model_class = None if spec.arch in BUILTIN else class_name(model)
        self.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # the run's `.init`
        if init_state:
            if spec.init:
                check_fits(self.lab, spec, model, init_state, self.slices.classes)
            load_partial(model, init_state)
            if spec.recalibrate:
                self._recalibrate(model, spec.recalibrate)
        self.attach(model, config)

    def _recalibrate(self, model: nn.Module, count: int) -> None:
        """Transfer with --recalibrate N: the norm statistics the donor's tensors give are re-estimated
        on the first N batches of the run's training slices (AdaBN) before epoch 1, in a fixed order;
        in mode freeze the frozen statistics stay at these values."""
        dims = 3 if self.depth else 2
        samples = model_samples(self.slices, size=None, depth=self.depth, dims=dims)
        index = samples.slice_indices("train", self.train_subjects)
        per = max(2, self.spec.batch // slices_per_sample(samples))  # BN needs 2 samples on 1x1 maps
        starts = range(0, min(len(index), per * count), per)
        batches = [torch.from_numpy(samples.images[index[s : s + per]]).unsqueeze(1) for s in starts]
        recalibrate(model, [b for b in batches if len(b) > 1] or batches)

    def attach(self, model: nn.Module, config: dict[str, Any]) -> None:
        """Move the model to the device and build its optimizer (and scaler for fp16)."""
        self.config = dict(config)
        self.depth = self._sample_depth(model)
        self._make_batches()
        self.model = with_layout(model.to(self.device), self.device)
        own = self.model.state_dict()
        unknown = [k for k in self.spec.frozen if k not in own]
        if unknown:
            raise UserError(f"frozen tensor {unknown[0]!r} is not in this model")
        if self.spec.frozen:
            self.freeze = freeze(self.model, self.spec.frozen)  # no gradients, no BN stat updates
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.spec.lr, fused=fused or None)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    # -- what the run files say -----------------------------------------------------------------

    def epoch_columns(self) -> list[str]:
        base = ["epoch", "train_loss", "seconds", "images_per_s", "memory_mb", "best"]
        if self.spec.task == "ae":
            return [*base, "val_mse", "val_psnr"]
        return [*base, "val_dice_fg", *(f"val_dice_{c}" for c in self.slices.classes)]

    def run_meta(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": self.name,
            "arch": s.arch,
            "task": s.task,
            "data": s.data,
            "epochs": s.epochs,
            "batch": s.batch,
            "lr": s.lr,
            "seed": s.seed,
            "precision": self.precision,
            "device": str(self.device),
            "threads": torch.get_num_threads(),  # torch's CPU threads (--threads): speed depends on them
            "checkpoint": self.name,
            "last_checkpoint": last_name(self.name),
            "size": self.slices.size,
            "depth": self.depth,
            "classes": list(self.slices.classes),
            "present": list(self.slices.present),
            "train_subjects": [self.slices.subjects[i] for i in self.train_subjects],
            "val_subjects": list(self.val_subjects),
            "arch_config": self.config,
            "spec": s.to_dict(),
        }

    def provenance(self) -> dict[str, Any]:
        return {"run": self.name, "data": self.spec.data, "seed": self.spec.seed, "spec": self.spec.to_dict()}

    def save_initial(self) -> None:
        """`<run>.init`: the seeded initial weights (before any donor tensor), the donor `init` of a scan."""
        if self.initial_state is None:  # a resumed run: its `.init` was written when it started
            return
        meta = self.checkpoint_meta(0, 0, {}, None)
        meta.extra["initial"] = True
        write_checkpoint(
            self.lab.path("checkpoints", init_name(self.name)), self.initial_state, meta, provenance=self.provenance()
        )

    def checkpoint_meta(self, epoch: int, global_step: int, metrics: dict, best: dict | None) -> CheckpointMeta:
        return CheckpointMeta(
            arch=self.spec.arch,
            arch_config=self.config,
            task=self.spec.task,
            data=self.spec.data,
            classes=list(self.slices.classes),
            epoch=epoch,
            metrics=metrics,
            run=self.name,
            seed=self.spec.seed,
            extra={
                "spec": self.spec.to_dict(),
                "size": self.slices.size,
                "depth": self.depth,  # a 3D model's block depth: evaluation and scans cut blocks alike
                "present": list(self.slices.present),
                "precision": self.precision,
                "global_step": global_step,
                "best": best,
                "grad_scaler": self.scaler.state_dict() if self.scaler is not None else None,
            },
        )

    # -- the loop -------------------------------------------------------------------------------

    def fit(
        self, writer: Any, *, first_epoch: int, global_step: int, best: dict | None, report: Reporter
    ) -> TrainResult:
        """Epochs first_epoch..spec.epochs; the run file is finished (or failed) on the way out."""
        spec, steps = self.spec, self.batches.steps_per_epoch
        start = time.perf_counter()
        report(
            Started(
                what=f"train {self.name}",
                total=spec.epochs * steps,
                unit="steps",
                info={
                    "run": self.name,
                    "first_epoch": first_epoch,
                    "epochs": spec.epochs,
                    "steps_per_epoch": steps,
                    "device": str(self.device),
                    "precision": self.precision,
                    "threads": torch.get_num_threads(),
                },
            )
        )
        if not self.val_subjects:
            report(
                Message(
                    f"data set {spec.data!r} has no validation subjects: epochs are judged by training loss "
                    "(the best checkpoint is the lowest-loss epoch)"
                )
            )
        try:
            batches = self.batches.epochs(first_epoch, spec.epochs)
            for epoch in range(first_epoch, spec.epochs + 1):
                global_step, best = self._epoch(epoch, batches, global_step, best, writer, report)
        except KeyboardInterrupt:
            writer.finish("cancelled")
            raise
        except BaseException as exc:
            try:
                writer.finish("failed")
            except Exception:  # the disk that refused an epoch may refuse the status too: report the first
                if not disk_full(exc):
                    raise
            reason = disk_full(exc)
            if reason:  # the run and the checkpoints that landed stay: say how to go on
                raise UserError(
                    f"disk full while writing run {self.name} ({reason}); the epochs saved before "
                    f"are kept: free some space, then `reuse-console train --resume {self.name}`"
                ) from exc
            raise
        writer.finish("finished")
        report(Finished(what="train", result=self.name, seconds=time.perf_counter() - start))
        best = best or {"epoch": spec.epochs, "metrics": {}}
        return TrainResult(
            name=self.name,
            run_path=writer.path,
            best_path=self.lab.path("checkpoints", self.name),
            last_path=self.lab.path("checkpoints", last_name(self.name)),
            epochs=spec.epochs,
            best_epoch=int(best["epoch"]),
            best_metrics=dict(best.get("metrics", {})),
        )

    def _epoch(self, epoch: int, batches: Any, global_step: int, best: dict | None, writer: Any, report: Reporter):
        spec, model, steps = self.spec, self.model, self.batches.steps_per_epoch
        torch.manual_seed(int(derived_generator(spec.seed, epoch, 0, stream=2).initial_seed()) & 0x7FFFFFFFFFFFFFFF)
        model.train()
        epoch_start = time.perf_counter()
        pending: list[tuple[int, torch.Tensor]] = []
        losses: list[float] = []
        images, last_flush, images_since = 0, epoch_start, 0
        for step in range(1, steps + 1):
            x, y = next(batches)
            loss = self._step(x, y)
            global_step += 1
            images += x.shape[0]
            images_since += x.shape[0]
            pending.append((global_step, loss))
            now = time.perf_counter()
            if step == steps or now - last_flush >= STEP_FLUSH_S:
                values = torch.stack([loss for _, loss in pending]).tolist()  # one device sync per flush
                now = time.perf_counter()
                rate = images_since / max(now - last_flush, 1e-9)
                for (gs, _), value in zip(pending, values):
                    writer.append_step(epoch, gs, value, rate)
                losses.extend(values)
                report(
                    StepEnd(
                        epoch=epoch,
                        step=step,
                        steps_per_epoch=steps,
                        global_step=global_step,
                        total_steps=spec.epochs * steps,
                        loss=values[-1],
                        images_per_s=rate,
                    )
                )
                pending, last_flush, images_since = [], now, 0
        train_seconds = time.perf_counter() - epoch_start
        train_loss = float(sum(losses) / len(losses))
        if not math.isfinite(train_loss):
            raise UserError(f"training diverged in epoch {epoch} (loss {train_loss}); try a smaller --lr")
        val, columns, metrics, score = self._validate()
        if not self.val_subjects:
            score = -train_loss  # no validation subjects: the best epoch is the lowest training loss
        is_best = best is None or score > float(best["score"])
        if is_best:
            best = {"epoch": epoch, "score": score, "metrics": metrics}
        images_per_s = images / max(train_seconds, 1e-9)
        mem = memory_mb(self.device)
        writer.append_epoch(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "seconds": time.perf_counter() - epoch_start,
                "images_per_s": images_per_s,
                "memory_mb": mem,
                "best": float(is_best),
                **columns,
            }
        )
        meta = self.checkpoint_meta(epoch, global_step, metrics, best)
        save_epoch(
            self.lab, self.name, model, meta, optimizer=self.optimizer, best=is_best, provenance=self.provenance()
        )
        report(
            EpochEnd(
                epoch=epoch,
                epochs=spec.epochs,
                train_loss=train_loss,
                val=val,
                best=is_best,
                images_per_s=images_per_s,
                seconds=time.perf_counter() - epoch_start,
                memory_mb=mem,
            )
        )
        return global_step, best

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns the loss as a device tensor (no sync)."""
        x = x.contiguous(memory_format=memory_format(self.device, x.ndim))
        with autocast(self.device, self.precision):
            out = self.model(x)
        if isinstance(out, list):  # deep supervision (engine/models/adapters.py): every head, weighted
            if self.spec.task == "seg":
                loss = deep_supervision_loss(out, y, lambda h, t: seg_loss(h, t, self.dice_classes), labels=True)
            else:
                loss = deep_supervision_loss(out, x, ae_loss, labels=False)
        else:
            loss = seg_loss(out, y, self.dice_classes) if self.spec.task == "seg" else ae_loss(out, x)
        self.optimizer.zero_grad(set_to_none=True)
        if not loss.requires_grad:  # every tensor frozen (a selffer control of a whole plan): nothing to train
            return loss.detach()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()

    def _validate(self) -> tuple[dict[str, float], dict[str, float], dict[str, Any], float]:
        """(event values, run columns, checkpoint metrics, score: higher is better)."""
        if self.spec.task == "ae":
            m = evaluate_ae(self.model, self.val_batches, self.device, self.precision)
            return dict(m), {"val_mse": m["mse"], "val_psnr": m["psnr"]}, dict(m), -m["mse"]
        result = evaluate_seg(
            self.model,
            self.val_batches,
            self.val_subjects,
            self.slices.classes,
            self.slices.present,
            self.device,
            self.precision,
        )
        by_class = result.by_class()
        val = {"dice_fg": result.dice_fg, **{c: v for c, v in by_class.items() if v is not None}}
        columns = {
            "val_dice_fg": result.dice_fg,
            **{f"val_dice_{c}": (float("nan") if v is None else v) for c, v in by_class.items()},
        }
        metrics = {
            "dice": by_class,
            "dice_std": result.by_class(result.std),
            "dice_fg": result.dice_fg,
            "split": "val",
            "subjects": len(self.val_subjects),
        }
        score = result.dice_fg if math.isfinite(result.dice_fg) else -1.0
        return val, columns, metrics, score
