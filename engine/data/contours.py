"""Contour text files (one `x y` point per line) and their filling into label masks.

Convention (the half-pixel question): a contour point (x, y) is in pixel coordinates, 0-based,
x the column and y the row, with pixel (row r, column c) centred on (x = c, y = r). A pixel
belongs to the contour's inside when its centre lies inside the polygon or on its boundary. So a
square with corners at (1.5, 1.5) and (4.5, 4.5) covers the 3 x 3 pixels 2..4, and a circle of
radius R around a pixel centre covers the pixels whose centres are within R of it.

Filling uses scikit-image's `draw.polygon2mask`, which tests exactly that (pixel centres against
the polygon, boundary included). Pillow's `ImageDraw.polygon` was tried and not used: it also
paints every pixel the outline touches, so the same square came out 4 x 4 (tests/engine/data/
test_contours.py checks both shapes against hand-rasterised masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reuse_console.store.errors import UserError


def read_contour(path: Path) -> np.ndarray:
    """The points (n, 2) of a contour file as (x, y) floats; at least three points."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read contour file ({exc})") from exc
    points: list[tuple[float, float]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            x, y = (float(p) for p in parts)
        except ValueError:
            raise UserError(f"{path}: line {number} is {line.strip()!r}, expected two numbers 'x y'") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise UserError(f"{path}: line {number} has a non-finite coordinate")
        points.append((x, y))
    if len(points) < 3:
        raise UserError(f"{path}: {len(points)} contour points; a closed contour needs at least 3")
    return np.asarray(points, dtype=np.float64)


def fill_contour(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (rows, columns): pixels whose centre is inside or on the polygon (x, y)."""
    from skimage.draw import polygon2mask

    return np.asarray(polygon2mask(shape, np.asarray(points, dtype=np.float64)[:, ::-1]), dtype=bool)


def mask_contour(mask: np.ndarray) -> np.ndarray | None:
    """The outline (n, 2) as (x, y) of a mask's largest (8-connected) region, or None if empty.

    The iso-line at 0.5 runs halfway between inside and outside pixel centres, so filling it
    back with `fill_contour` gives the region again (the phantom's contour files are made so).
    """
    from skimage.measure import find_contours

    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.float32), 1)  # closes regions that touch the image border
    # fully_connected="high": pixels touching at a corner are one region (8-connected), as a
    # thin apical RV crescent is drawn as one contour
    lines = find_contours(padded, 0.5, fully_connected="high")
    if not lines:
        return None
    largest = max(lines, key=_area) - 1.0  # undo the padding's offset
    return np.ascontiguousarray(largest[:, ::-1])


def _area(line: np.ndarray) -> float:
    """The area a closed outline encloses (shoelace formula)."""
    y, x = line[:, 0], line[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def write_contour(path: Path, points: np.ndarray) -> Path:
    """A contour file: one `x y` line per point, two decimals, as the RVSC files have them."""
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in points))
    return path
