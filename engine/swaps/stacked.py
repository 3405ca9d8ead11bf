"""Stacked variants: K variants of one group evaluated in one downstream pass (torch.func.vmap).

Why: a scan re-runs a small downstream part once per variant. On a GPU one such run of a small
model over a few dozen slices leaves most of the chip idle; K variants at once make each kernel K
times larger. The changed tensors get a leading K axis and are put into the model by
reparametrisation (`torch.func.functional_call`: the module's tensors are replaced for the call,
nothing is copied); vmap gives each op its batched form. A convolution whose weight or bias is
stacked becomes one convolution K times as wide, the unchanged layers after it one convolution
over K*N samples, and the cached activations the part reads are shared by all K. A batch norm
folded into its convolution (engine/swaps/fold.py) turns RM/RV/RW/RB variants into stacked conv
weights and biases; an unfolded one runs vmap's batch-norm rule (running statistics per variant).

Precision. In fp32 a stacked run computes the loop's values up to the rounding of a differently
blocked convolution: Dice are equal, but for pixels whose two best scores tie within ~1e-5. On
CUDA, TF32 is off while an fp32 scan runs (core/device.py `exact_fp32`). Autocast does not reach
ops under vmap (a convolution sees a bf16 input with fp32 weights and refuses), so in bf16/fp16
the stacked run casts the arguments of convolutions and matrix products itself, where autocast
would (`_LowPrecision`), and runs a batch norm of a low-precision input in fp32, rounding its
output once, as the CPU kernel does; other ops see what they would see without autocast.

Safety. The first stack of each group is compared with the loop on one of its variants (fp32:
within 1e-4 of the output's scale; bf16/fp16: 5e-2, their own rounding): a mismatch, or any
error, sends the group back to the loop for the rest of the scan, with a message. An out-of-memory
error halves K first. Not with recalibration (its norms run in train mode, per variant).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual name
from torch.overrides import TorchFunctionMode

from reuse_console.engine.core.events import Message, Reporter
from reuse_console.engine.swaps.partial import Downstream, describe
from reuse_console.engine.swaps.swap import Swap, model_tensors
from reuse_console.engine.swaps.variants import Variant
from reuse_console.store.errors import UserError

CUDA_STACK = 8  # variants per pass on a GPU when not given (a group has at most 4 per alpha, 12 for 3 alphas)
_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 5e-2}  # stacked vs loop, relative to the output's scale
_LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}
_LOW_PRECISION_OPS = {  # what autocast runs in bf16/fp16 on CPU and CUDA alike
    torch.conv1d,
    torch.conv2d,
    torch.conv3d,
    torch.conv_transpose1d,
    torch.conv_transpose2d,
    torch.conv_transpose3d,
    F.linear,
    torch.matmul,
    torch.Tensor.matmul,
    torch.Tensor.__matmul__,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.addbmm,
}
_NORMS = {F.batch_norm, torch.batch_norm}


def check_stack(stack: int | None) -> int | None:
    """A --stack the user gave: at least 1 (None: the device's default)."""
    if stack is not None and (isinstance(stack, bool) or stack < 1):
        raise UserError(f"--stack must be at least 1 (got {stack})")
    return stack


def default_stack(device: torch.device) -> int:
    """Variants per downstream pass when not given: 1 on CPU (stacking measured no faster there,
    docs/performance.md), CUDA_STACK on a GPU (halved on out-of-memory)."""
    return CUDA_STACK if device.type == "cuda" else 1


class _LowPrecision(TorchFunctionMode):
    """Autocast's casts for the ops that need them, applied before vmap sees the call."""

    def __init__(self, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.device_type, self.dtype = device_type, dtype

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if torch.is_autocast_enabled(self.device_type):  # off inside the fp32 class-score layers
            if func in _LOW_PRECISION_OPS:
                args = tuple(self._low(a) for a in args)
                kwargs = {k: self._low(v) for k, v in kwargs.items()}
            elif func in _NORMS and args and isinstance(args[0], torch.Tensor) and args[0].dtype == self.dtype:
                return func(args[0].float(), *args[1:], **kwargs).to(self.dtype)
        return func(*args, **kwargs)

    def _low(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
            return value.to(self.dtype)
        return value


class _Part(nn.Module):
    """The model as a module whose forward is one downstream run (what functional_call calls)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.downstream: Downstream | None = None

    def forward(self) -> Any:
        assert self.downstream is not None
        return self.downstream.run()


def _out_of_memory(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, torch.OutOfMemoryError):
            return True
        exc = exc.__cause__
    return False


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.float()
    scale = float(want.abs().max()) or 1.0
    return float((got.float() - want).abs().max()) / scale


class Stacker:
    """Evaluates the variants of a group K at a time; the loop takes whatever it hands back."""

    def __init__(
        self,
        model: nn.Module,
        donor: Mapping[str, torch.Tensor],
        variants: Sequence[Variant],
        *,
        stack: int,
        precision: str,
        device: torch.device,
        report: Reporter,
    ) -> None:
        self.model, self.donor, self.variants = model, donor, variants
        self.stack, self.precision, self.device, self.report = stack, precision, device, report
        self.live = model_tensors(model)
        self.looped: dict[str, str] = {}  # group -> why the loop evaluates it
        self._checked: set[tuple[str, str]] = set()
        self._part = _Part(model)

    def evaluate(
        self, group: str, members: Sequence[int], downstream: Downstream, take: Callable[[int, torch.Tensor], None]
    ) -> list[int]:
        """Evaluate `members` (indices into the variants) in stacks of up to K, calling `take(i,
        output)` for each one evaluated; returns those left to the loop (a last single one, or all
        of a group the stacked path failed on)."""
        left = list(members)
        while len(left) > 1 and self.stack > 1 and group not in self.looped:
            chunk = left[: self.stack]
            try:
                out = self._run(chunk, downstream)
                if (group, downstream.name) not in self._checked:
                    self._check(group, chunk[-1], out[-1], downstream)
            except Exception as exc:
                if _out_of_memory(exc):
                    del exc  # its traceback holds the failed run's tensors
                    self.stack //= 2
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    self.report(Message(f"stacked variants: out of memory, {self.stack} per pass from now on"))
                    continue
                self._loop(group, describe(exc))
                break
            for j, i in enumerate(chunk):
                take(i, out[j])
            left = left[len(chunk) :]
        return left

    def _loop(self, group: str, reason: str) -> None:
        self.looped[group] = reason
        self.report(Message(f"stacked variants of {group or 'the model'} failed, one at a time instead: {reason}"))

    def _check(self, group: str, i: int, got: torch.Tensor, downstream: Downstream) -> None:
        v = self.variants[i]
        with Swap(self.model, self.donor, v.keys, v.alpha):
            want = downstream.run()
        error = _relative_error(got, want)
        if not error <= _TOLERANCE[self.precision]:
            raise RuntimeError(f"the stacked output of {v.id} differs from the loop's by {error:.2g} of its scale")
        self._checked.add((group, downstream.name))  # a full forward after a fallback is checked again

    def _value(self, i: int, key: str) -> torch.Tensor:
        """Variant i's value of `key`, exactly what Swap writes in place."""
        v, live = self.variants[i], self.live[key]
        if key not in v.keys or v.alpha == 0.0:
            return live
        donor = self.donor[key]
        return donor if v.alpha == 1.0 else torch.lerp(live, donor.to(live.dtype), v.alpha)

    def _run(self, chunk: Sequence[int], downstream: Downstream) -> torch.Tensor:
        """The stacked output (K, *output) of the variants in `chunk`."""
        keys = list(dict.fromkeys(k for i in chunk for k in self.variants[i].keys))
        values = {f"model.{k}": torch.stack([self._value(i, k) for i in chunk]) for k in keys}
        part = self._part

        def one(tensors: dict[str, torch.Tensor]) -> Any:
            return torch.func.functional_call(part, tensors, (), tie_weights=False, strict=False)

        low = _LOW.get(self.precision)
        part.downstream = downstream
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule")
                if low is None:
                    out = torch.func.vmap(one, randomness="error")(values)
                else:
                    with _LowPrecision(self.device.type, low):
                        out = torch.func.vmap(one, randomness="error")(values)
        finally:
            part.downstream = None
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returns {type(out).__name__}, not one tensor of class scores")
        return out


def stacker_for(
    model: nn.Module,
    donor: Mapping[str, torch.Tensor],
    variants: Sequence[Variant],
    *,
    stack: int | None,
    precision: str,
    device: torch.device,
    report: Reporter,
) -> Stacker | None:
    """The scan's stacker, or None where variants run one at a time (K = 1)."""
    k = check_stack(stack) or default_stack(device)
    if k <= 1:
        return None
    return Stacker(model, donor, variants, stack=k, precision=precision, device=device, report=report)
