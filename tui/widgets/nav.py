"""The top line of every screen: where you are, which lab, and the keys of the other screens."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SCREENS: tuple[tuple[str, str, str], ...] = (
    ("1", "lab", "Lab"),
    ("2", "layers", "Layers"),
    ("3", "swap", "Swap"),
    ("4", "scans", "Scans"),
    ("5", "jobs", "Jobs"),
)


class NavBar(Static):
    """`reuse-console  1 Lab 2 Layers ...` with the current screen highlighted, plus a context note."""

    def __init__(self, current: str, lab_label: str, note: str = "") -> None:
        super().__init__(id="nav")
        self.current = current
        self.lab_label = lab_label
        self.note = note

    def on_mount(self) -> None:
        self.update(self._text())

    def on_resize(self) -> None:
        self.update(self._text())

    def set_note(self, note: str) -> None:
        """Show what the screen is looking at (a checkpoint, a scan) after the lab name."""
        self.note = note
        self.update(self._text())

    def _text(self) -> Text:
        """Every screen by name; where that leaves the note no room (80 columns), only the current
        screen by name and the others by their key, so the note shows."""
        full = self._line(compact=False)
        width = self.size.width
        if width and self.note and full.cell_len > width:
            return self._line(compact=True)
        return full

    def _line(self, compact: bool) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        config = getattr(self.app, "config", None)
        keymap = getattr(config, "keymap", None) or {}
        for key, mode, label in SCREENS:
            key = keymap.get(f"app.screen.{mode}", key).split(",")[0]
            current = mode == self.current
            style = "bold reverse" if current else ""
            text.append(f" {key}", style="bold " + style if style else "bold")
            if current or not compact:
                text.append(f" {label} ", style=style)
        text.append(f" {'' if compact else 'lab '}{self.lab_label}", style="dim")
        if self.note:
            text.append(f" · {self.note}", style="dim")
        return text
