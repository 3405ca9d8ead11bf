"""ScanScreen (first cut)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import ConsoleScreen


class ScanScreen(ConsoleScreen):
    MODE = "scans"

    def compose_body(self) -> ComposeResult:
        yield Static("scans", id="body")
