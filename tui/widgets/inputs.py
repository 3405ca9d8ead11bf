"""The console's text box: Textual's Input, with cursor blinking as the app's config says."""

from __future__ import annotations

from textual.widgets import Input


class ConsoleInput(Input):
    """An Input that does not blink when the console runs with `cursor_blink=False` (snapshots, SSH)."""

    def on_mount(self) -> None:
        config = getattr(self.app, "config", None)
        if config is not None and not getattr(config, "cursor_blink", True):
            self.cursor_blink = False
