"""Predicted and reference label maps as NIfTI files a viewer can lay over the source image.

`--grid source` (the default) puts each volume's prediction back on the source image's own voxel
grid (the crop/pad undone, in-plane resampling undone by nearest neighbour: engine/data/
source_grid.py) and writes it with the source's affine, so `{volume}_pred.nii.gz` opens on top of
the original image in ITK-SNAP or 3D Slicer; the reference is written back in the source's raw
label values. `--grid evaluated` writes the stored slices' grid instead, with the normalised image
the model saw and an affine that still places it in the scanner's space. Voxels the import cropped
away hold 0 (background) in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reuse_console.engine.data.classes import map_classes
from reuse_console.engine.data.slices import SliceSet
from reuse_console.engine.data.source_grid import Placement, nearest_resize, to_source_grid
from reuse_console.engine.data.volumes import IGNORE
from reuse_console.store.errors import UserError

GRIDS = ("source", "evaluated")


def raw_values(source: dict[str, Any], classes: list[str]) -> np.ndarray:
    """Class index -> the source's raw label value (uint8 (256,)); identity when unknown."""
    out = np.arange(256, dtype=np.uint8)
    declared = {int(k): str(v) for k, v in dict(source.get("declared_labels") or {}).items()}
    if not declared:
        return out
    class_map = map_classes(declared)
    if list(class_map.classes) != list(classes):
        return out
    for raw in declared:
        out[int(class_map.lut[raw])] = raw
    out[IGNORE] = 0
    return out


def evaluated_affine(where: Placement, source_affine: np.ndarray) -> np.ndarray:
    """Voxel (column, row, slice) of the stored grid -> world mm, through the source's affine."""
    x, y, _ = where.shape
    rows, cols = where.resampled
    sx, sy = x / cols, y / rows  # source voxels per stored pixel
    to_source = np.eye(4)
    to_source[0, 0], to_source[1, 1] = sx, sy
    # stored column i is resampled column i - dst + src, whose centre is at source x (c + 0.5) sx - 0.5
    to_source[0, 3] = (where.columns[0] - where.columns[1] + 0.5) * sx - 0.5
    to_source[1, 3] = (where.rows[0] - where.rows[1] + 0.5) * sy - 0.5
    return np.asarray(source_affine, dtype=np.float64) @ to_source


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def write_volume_predictions(
    folder: Path, stored: SliceSet, volumes: list[str], predictions: list[np.ndarray], *, grid: str = "source"
) -> list[Path]:
    """`{volume}_pred.nii.gz` and `{volume}_gt.nii.gz` per volume (and `_image` on the evaluated grid).

    `predictions[i]` is a (slices, H, W) stack of volume `volumes[i]` in slice order, at any
    in-plane size (brought back to the stored size by nearest neighbour first); `stored` is the
    data set as imported: its labels are the reference, its `/volume_info` says where each
    volume came from. Unlabelled volumes get no `_gt`.
    """
    if grid not in GRIDS:
        raise UserError(f"--grid {grid}: choose source or evaluated")
    info = {str(v["volume"]): v for v in stored.attrs.get("volume_info") or []}
    missing = [v for v in volumes if v not in info]
    if missing or stored.volume is None:
        raise UserError(f"data set {stored.name!r} has no import geometry for {missing[:1]}: import it again")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    to_raw = raw_values(stored.attrs.get("source") or {}, list(stored.classes))
    size = (stored.size, stored.size)
    written: list[Path] = []
    for volume, pred in zip(volumes, predictions):
        where = Placement.from_json(info[volume]["placement"])
        affine = np.asarray(info[volume]["affine"], dtype=np.float64)
        rows = np.flatnonzero(np.asarray(stored.volume) == stored.volumes.index(volume))
        ref = stored.labels[rows]
        pred = nearest_resize(pred, size).astype(np.uint8)
        labelled = not (ref == IGNORE).all()
        if grid == "source":
            maps = [("pred", to_source_grid(pred, where))]
            if labelled:
                maps.append(("gt", to_raw[to_source_grid(ref, where)]))
            for suffix, data in maps:
                written.append(_save(folder / f"{volume}_{suffix}.nii.gz", data.astype(np.uint8), affine))
            continue
        eval_affine = evaluated_affine(where, affine)
        maps = [("pred", pred), ("image", stored.images[rows])]
        if labelled:
            maps.append(("gt", to_raw[ref]))
        for suffix, data in maps:
            xyz = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
            written.append(_save(folder / f"{volume}_{suffix}.nii.gz", xyz, eval_affine))
    return written
