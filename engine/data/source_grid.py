"""Where a stored slice's pixels came from, and the way back to the source volume's own grid.

Import turns a volume (x, y, slice) into slices (slice, row = y, column = x), optionally resampled
in-plane (engine/data/slices.resample_slices) and centre-cropped or padded to SIZE x SIZE. A
`Placement` records those steps per volume (in the data set's `/volume_info`), so a prediction
made on the stored slices can be put back voxel for voxel on the source grid and saved with the
source's affine: a viewer then overlays it on the original image (engine/evaluation/predictions.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Placement:
    """How one source volume became stored slices."""

    shape: tuple[int, int, int]  # source (x, y, slices)
    resampled: tuple[int, int]  # (rows, columns) after in-plane resampling (= (y, x) without it)
    rows: tuple[int, int, int]  # (source start, stored start, length) of the kept rows
    columns: tuple[int, int, int]  # the same for columns

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Placement:
        return cls(
            shape=tuple(int(v) for v in data["shape"]),  # type: ignore[arg-type]
            resampled=tuple(int(v) for v in data["resampled"]),  # type: ignore[arg-type]
            rows=tuple(int(v) for v in data["rows"]),  # type: ignore[arg-type]
            columns=tuple(int(v) for v in data["columns"]),  # type: ignore[arg-type]
        )


def crop_span(n: int, size: int) -> tuple[int, int, int]:
    """(source start, stored start, length) of a centre crop (n >= size) or pad (n < size) to size."""
    if n >= size:
        return (n - size) // 2, 0, size
    return 0, (size - n) // 2, n


def placement(shape: tuple[int, int, int], resampled: tuple[int, int], size: int) -> Placement:
    """The placement of a (x, y, slices) volume resampled to `resampled` (rows, columns), then cropped."""
    return Placement(
        shape=tuple(int(s) for s in shape),  # type: ignore[arg-type]
        resampled=(int(resampled[0]), int(resampled[1])),
        rows=crop_span(int(resampled[0]), size),
        columns=crop_span(int(resampled[1]), size),
    )


def nearest_resize(stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize (Z, H, W) to (Z, *shape) taking, for each output pixel, the input pixel whose
    centre is nearest (pixel centres aligned at the image edges, as `resample_slices` does)."""
    z, h, w = stack.shape
    if (h, w) == tuple(shape):
        return stack
    yi = np.clip(np.floor((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(np.int64), 0, h - 1)
    xi = np.clip(np.floor((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(np.int64), 0, w - 1)
    return stack[:, yi][:, :, xi]


def to_source_grid(stack: np.ndarray, where: Placement, fill: int = 0) -> np.ndarray:
    """Stored label slices (Z, SIZE, SIZE) back to the source volume's grid (x, y, slices).

    Pixels the crop cut away get `fill` (nothing was predicted there); resampling is undone by
    nearest neighbour, so no new label values appear.
    """
    r_src, r_dst, r_len = where.rows
    c_src, c_dst, c_len = where.columns
    z = stack.shape[0]
    grid = np.full((z, *where.resampled), fill, dtype=stack.dtype)
    grid[:, r_src : r_src + r_len, c_src : c_src + c_len] = stack[:, r_dst : r_dst + r_len, c_dst : c_dst + c_len]
    x, y, _ = where.shape
    back = nearest_resize(grid, (y, x))
    return np.ascontiguousarray(np.transpose(back, (2, 1, 0)))
