"""Front ends: the typer CLI (`cli.py`) and the Textual console (`app.py`). No experiment logic."""

from __future__ import annotations
