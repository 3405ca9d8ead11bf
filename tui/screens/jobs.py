"""JobsScreen (first cut)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import ConsoleScreen


class JobsScreen(ConsoleScreen):
    MODE = "jobs"

    def compose_body(self) -> ComposeResult:
        yield Static("jobs", id="body")
