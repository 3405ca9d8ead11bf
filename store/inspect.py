"""Describe any lab file generically: its attributes and its tree of groups and datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from .h5 import open_h5


def _attr_value(raw: Any) -> Any:
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str) and raw[:1] in "[{":
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    if hasattr(raw, "tolist"):
        return raw.tolist()
    return raw


def describe(path: Path, max_items: int = 200) -> dict[str, Any]:
    """Root attributes (JSON decoded) and up to `max_items` datasets with shape and dtype."""
    with open_h5(path) as f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        items: list[dict[str, Any]] = []
        total = 0

        def visit(name: str, obj: h5py.HLObject) -> None:
            nonlocal total
            if isinstance(obj, h5py.Dataset):
                total += 1
                if len(items) < max_items:
                    items.append(
                        {"path": "/" + name, "shape": list(obj.shape), "dtype": str(obj.attrs.get("dtype", obj.dtype))}
                    )

        f.visititems(visit)
    return {"attrs": attrs, "datasets": items, "dataset_count": total}
