"""Tensors and state dicts <-> HDF5 datasets, dtype kept exactly.

One dataset per tensor under `/params/<module.path>/<name>`, uncompressed. bfloat16 has no HDF5
type, so it is stored as its int16 bit pattern with a `dtype` attribute; every other dtype is
stored natively and also tagged, so the round trip is bit-exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import h5py
import numpy as np
import torch

_VIEWS: dict[torch.dtype, torch.dtype] = {torch.bfloat16: torch.int16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def write_tensor(group: h5py.Group, name: str, tensor: torch.Tensor) -> h5py.Dataset:
    """Write one tensor as a dataset named `name` (which may contain '/') in `group`."""
    t = tensor.detach().to("cpu").contiguous()
    view = _VIEWS.get(t.dtype)
    array = (t.view(view) if view is not None else t).numpy()
    ds = group.create_dataset(name, data=array)
    ds.attrs["dtype"] = _dtype_name(t.dtype)
    return ds


def read_tensor(ds: h5py.Dataset) -> torch.Tensor:
    """Read a dataset written by `write_tensor` back into a tensor of the same dtype."""
    array = ds[()]
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        array = np.array(array)  # 0-d datasets read as numpy scalars; keep them 0-d
    t = torch.from_numpy(array)
    name = ds.attrs.get("dtype")
    if isinstance(name, bytes):
        name = name.decode()
    if name:
        dtype = getattr(torch, str(name))
        if t.dtype != dtype:
            t = t.view(dtype) if dtype in _VIEWS else t.to(dtype)
    return t


def write_state_dict(group: h5py.Group, state: Mapping[str, torch.Tensor]) -> None:
    """Write a state dict: key `a.b.weight` becomes dataset `a.b/weight` (dots kept in paths)."""
    for key, tensor in state.items():
        module, _, leaf = key.rpartition(".")
        write_tensor(group, f"{module}/{leaf}" if module else leaf, tensor)


def read_state_dict(group: h5py.Group) -> dict[str, torch.Tensor]:
    """Read a group written by `write_state_dict` back into a state dict with the same keys."""
    state: dict[str, torch.Tensor] = {}

    def visit(path: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset):
            module, _, leaf = path.rpartition("/")
            state[f"{module}.{leaf}" if module else leaf] = read_tensor(obj)

    group.visititems(visit)
    return state
