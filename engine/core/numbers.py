"""Numbers for JSON output: a value that is missing (NaN, as the engine's arrays mark it) or not
finite becomes None, i.e. `null`. `json.dumps` would write a bare `NaN`/`Infinity`, which is not
JSON: jq, JavaScript and most other readers of `--json` output reject it."""

from __future__ import annotations

import math
from typing import SupportsFloat


def finite_or_none(value: SupportsFloat | None) -> float | None:
    """`value` as a plain float (numpy scalars included), or None for None, NaN and ±inf."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
