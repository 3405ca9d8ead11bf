"""JSON output: missing numbers are null, never a bare NaN that strict JSON readers reject."""

from __future__ import annotations

import json
import math

import numpy as np

from reuse_console.engine.core.numbers import finite_or_none


def test_missing_and_infinite_numbers_become_null_in_strict_json() -> None:
    values = [np.float32("nan"), np.float64("inf"), -math.inf, None, np.float32(0.25), np.int64(3), 1.5]
    out = [finite_or_none(v) for v in values]
    assert json.dumps(out, allow_nan=False) == "[null, null, null, null, 0.25, 3.0, 1.5]"
    assert all(type(v) is float for v in out if v is not None)  # numpy scalars become plain floats
