"""Contour filling against masks rasterised by hand: the half-pixel convention of contours.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reuse_console.engine.data.contours import fill_contour, mask_contour, read_contour, write_contour
from reuse_console.store.errors import UserError


def test_square_on_half_pixels_covers_the_centres_inside() -> None:
    # corners on pixel edges: pixels 2, 3, 4 have their centres inside, 1 and 5 do not
    square = np.array([(1.5, 1.5), (4.5, 1.5), (4.5, 4.5), (1.5, 4.5)])
    expected = np.zeros((8, 8), dtype=bool)
    expected[2:5, 2:5] = True
    np.testing.assert_array_equal(fill_contour(square, (8, 8)), expected)


def test_square_through_centres_includes_its_boundary() -> None:
    square = np.array([(1.0, 2.0), (5.0, 2.0), (5.0, 4.0), (1.0, 4.0)])  # x 1..5 (columns), y 2..4 (rows)
    expected = np.zeros((7, 8), dtype=bool)
    expected[2:5, 1:6] = True
    np.testing.assert_array_equal(fill_contour(square, (7, 8)), expected)


def test_x_is_the_column_and_y_the_row() -> None:
    thin = np.array([(0.5, 2.5), (6.5, 2.5), (6.5, 3.5), (0.5, 3.5)])  # a row band: y = 3, x = 1..6
    mask = fill_contour(thin, (6, 8))
    assert np.argwhere(mask)[:, 0].tolist() == [3] * 6
    assert np.argwhere(mask)[:, 1].tolist() == [1, 2, 3, 4, 5, 6]


def test_circle_matches_the_centres_within_the_radius() -> None:
    cx, cy, radius = 10.0, 9.0, 5.3
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    circle = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
    rows, cols = np.mgrid[0:20, 0:22]
    by_hand = (cols - cx) ** 2 + (rows - cy) ** 2 <= radius**2
    got = fill_contour(circle, (20, 22))
    # a 720-gon lies inside the circle by at most R(1 - cos(pi/720)) < 1e-4 px: only centres that
    # close to the circle could differ, and none is
    near = np.abs(np.hypot(cols - cx, rows - cy) - radius) < 1e-3
    assert not near.any()
    np.testing.assert_array_equal(got, by_hand)
    # by hand, rows dy = 0, ±1 .. ±5 from the centre (dx² <= 28.09 - dy²): 11 + 2*11 + 2*9 + 2*9 + 2*7 + 2*3
    assert got.sum() == 89


def test_outline_of_a_mask_fills_back_to_it() -> None:
    mask = np.zeros((12, 14), dtype=bool)
    mask[2:9, 3:7] = True
    mask[5:10, 6:12] = True  # an L-shaped region touching nothing
    mask[0:3, 0:2] = False
    np.testing.assert_array_equal(fill_contour(mask_contour(mask), mask.shape), mask)
    assert mask_contour(np.zeros((4, 4), dtype=bool)) is None
    corner = np.zeros((6, 6), dtype=bool)
    corner[1:3, 1:3] = corner[3, 3] = corner[4, 4] = True  # touching at corners only: one region
    np.testing.assert_array_equal(fill_contour(mask_contour(corner), corner.shape), corner)


def test_contour_file_round_trip_and_bad_lines(tmp_path: Path) -> None:
    points = np.array([(1.25, 2.5), (3.0, 4.75), (0.5, 6.0)])
    np.testing.assert_allclose(read_contour(write_contour(tmp_path / "c.txt", points)), points)
    (tmp_path / "bad.txt").write_text("1 2\n3 x\n4 5\n")
    with pytest.raises(UserError, match="line 2"):
        read_contour(tmp_path / "bad.txt")
    (tmp_path / "short.txt").write_text("1 2\n3 4\n")
    with pytest.raises(UserError, match="at least 3"):
        read_contour(tmp_path / "short.txt")
