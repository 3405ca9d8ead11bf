"""Tensors and state dicts survive a trip through HDF5 bit for bit, dtype and shape included."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import torch

from reuse_console.store.tensors import read_state_dict, read_tensor, write_state_dict, write_tensor

_BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bit pattern (so NaN payloads and -0.0 count too)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = _BITS.get(a.dtype)
    return torch.equal(a.view(view), b.view(view)) if view is not None else torch.equal(a, b)


def _samples(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return [torch.rand(3, 5, generator=g) > 0.5, torch.tensor(True)]
    if dtype == torch.int64:
        return [torch.tensor([-(2**63), -1, 0, 2**63 - 1]), torch.tensor(42), torch.zeros(0, 3, dtype=dtype)]
    special = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-8, 65504.0]).to(dtype)
    return [torch.randn(4, 3, 3, 3, generator=g).to(dtype), special, torch.tensor(1.5, dtype=dtype)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool])
def test_tensor_round_trip_is_bit_exact(tmp_path: Path, dtype: torch.dtype) -> None:
    tensors = _samples(dtype)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        for i, t in enumerate(tensors):
            write_tensor(f, f"t{i}", t)
    with h5py.File(tmp_path / "t.h5", "r") as f:
        back = [read_tensor(f[f"t{i}"]) for i in range(len(tensors))]
        stored = str(f["t0"].attrs["dtype"])
    assert stored == str(dtype).removeprefix("torch.")
    for t, b in zip(tensors, back):
        assert _same_bits(t, b), (t, b)


def test_zero_dim_tensors_stay_zero_dim(tmp_path: Path) -> None:
    scalars = {
        "f32": torch.tensor(3.25),
        "bf16": torch.tensor(-0.5, dtype=torch.bfloat16),
        "i64": torch.tensor(7),
        "b": torch.tensor(False),
    }
    with h5py.File(tmp_path / "s.h5", "w") as f:
        for name, t in scalars.items():
            write_tensor(f, name, t)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        for name, t in scalars.items():
            back = read_tensor(f[name])
            assert back.shape == torch.Size([]) and back.dtype == t.dtype and back.item() == t.item()


def test_bfloat16_is_stored_as_its_int16_bit_pattern(tmp_path: Path) -> None:
    t = torch.tensor([1.0, -2.0, 0.15625], dtype=torch.bfloat16)
    with h5py.File(tmp_path / "b.h5", "w") as f:
        write_tensor(f, "w", t)
    with h5py.File(tmp_path / "b.h5", "r") as f:
        raw = f["w"][()]
        assert raw.dtype.name == "int16"
        # bf16 is the top half of float32: 1.0 = 0x3F80, -2.0 = 0xC000, 0.15625 = 0x3E20
        assert [int(v) & 0xFFFF for v in raw] == [0x3F80, 0xC000, 0x3E20]


def test_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1)
    )
    model(torch.randn(2, 1, 8, 8))  # BN running stats move away from their init values
    state = model.state_dict()
    state["0.weight"] = state["0.weight"].to(torch.bfloat16)  # mixed dtypes in one dict
    with h5py.File(tmp_path / "m.h5", "w") as f:
        write_state_dict(f.create_group("params"), state)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "params/1/running_mean" in f and "params/1/num_batches_tracked" in f
        back = read_state_dict(f["params"])
    assert set(back) == set(state)
    for key in state:
        assert _same_bits(state[key], back[key]), key
    assert back["1.num_batches_tracked"].dim() == 0
