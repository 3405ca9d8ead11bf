"""reuse-console: a terminal lab console for parameter-reuse studies of CNNs."""

from __future__ import annotations

__version__ = "0.1.0"
