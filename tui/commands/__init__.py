"""One module per group of CLI commands; `tui/cli.py` registers them."""

from __future__ import annotations
