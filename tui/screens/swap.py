"""SwapScreen (first cut)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import ConsoleScreen


class SwapScreen(ConsoleScreen):
    MODE = "swap"

    def compose_body(self) -> ComposeResult:
        yield Static("swap", id="body")
