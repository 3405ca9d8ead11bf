"""The lab console: a keyboard-driven Textual app over the lab and the engine.

One mode per top-level screen (Lab, Layers, Swap lab, Scan view, Jobs), each keeping its state
while another is shown; digits switch screens, Ctrl+P opens the command palette. The app only
asks and shows: every number on screen comes from the engine or the store, read in workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.scrollbar import ScrollBar, ScrollBarRender

from reuse_console.store.lab import Lab

from .screens.base import ConsoleScreen, PaletteCommand
from .screens.comparison import ComparisonScreen
from .screens.experiment import ExperimentScreen
from .screens.help import HelpScreen
from .screens.jobs import JobsScreen
from .screens.lab import LabListing, LabScreen
from .screens.layers import LayersScreen
from .screens.plan_view import PlanScreen
from .screens.result import ResultScreen
from .screens.run_view import RunScreen
from .screens.scans import ScanScreen
from .screens.swap import SwapScreen
from .widgets.nav import SCREENS

SCREEN_GROUP = Binding.Group("screens", compact=True)
VIEWS: dict[str, type[ResultScreen]] = {
    "experiments": ExperimentScreen,
    "plans": PlanScreen,
    "runs": RunScreen,
    "comparisons": ComparisonScreen,
}


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console runs. Tests build one with fixed values (no polling noise, no clock)."""

    lab: Lab
    mouse: bool = True
    lab_label: str | None = None  # shown instead of the lab path (snapshot tests)
    lab_poll_s: float = 5.0  # re-read the lab listing
    job_poll_s: float = 0.5  # follow running jobs (a few redraws a second at most)
    system_stats: bool = True  # CPU/RAM or GPU use in the job view
    timings: bool = True  # show wall-clock times (snapshot tests turn them off: no clock)
    cursor_blink: bool = True
    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> key(s), e.g. {"app.screen.lab": "f1"}


OBJECT_PREFIXES = ("Layers of", "Scan ", "Comparison ", "Grid ", "Plan ", "Run ", "Job ")


def binding_commands(
    screen: Any, taken: set[str], covered: frozenset[str] | set[str] = frozenset()
) -> list[PaletteCommand]:
    """Every action bound on `screen` (its own keys and its focused widget's) as a palette command,
    named "<Screen>: <description> (<keys>)", so the palette offers what the keys do; actions the
    screen's own palette commands already run (`covered`, by action name) are left out."""
    from .screens.help import key_rows

    label = type(screen).__name__.removesuffix("Screen") or "Screen"
    out: list[PaletteCommand] = []
    for row in key_rows(screen):
        if row.where == "everywhere" or not row.binding_id:  # the console's own bindings, not Textual's
            continue
        if row.action.split("(")[0] in covered:
            continue
        name = f"{label}: {row.description} ({row.keys})"
        if name not in taken:
            out.append((name, f"Key {row.keys}", partial(screen.app.run_action, row.action, row.node)))
    return out


class ConsoleCommands(Provider):
    """Command palette: go to a screen, open any object of the lab, and the screen's own commands."""

    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        assert isinstance(app, ConsoleApp)
        out: list[PaletteCommand] = []
        for key, mode, label in SCREENS:
            out.append((f"Go to {label}", f"Show the {label} screen (key {key})", partial(app.goto, mode)))
        screen = self.screen
        if isinstance(screen, ConsoleScreen):
            out.extend(screen.palette_commands())
        own = {getattr(callback, "__name__", "").removeprefix("action_") for _, _, callback in out}
        out.extend(binding_commands(screen, {name for name, _, _ in out}, own))
        listing = app.listing
        if listing is not None:
            openers: dict[str, tuple[str, Callable[[str], object]]] = {
                "checkpoints": ("Layers of", app.open_layers),
                "scans": ("Scan", app.open_scan),
                "comparisons": ("Comparison", partial(app.open_view, "comparisons")),
                "experiments": ("Grid", partial(app.open_view, "experiments")),
                "plans": ("Plan", partial(app.open_view, "plans")),
                "runs": ("Run", partial(app.open_view, "runs")),
                "jobs": ("Job", app.open_job),
            }
            for kind, (verb, opener) in openers.items():
                for row in listing.rows.get(kind, []):
                    out.append((f"{verb} {row.id}", f"Open {kind[:-1]} {row.id}", partial(opener, row.id)))
        return out

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            if not name.startswith(OBJECT_PREFIXES):
                yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class CellScrollBarRender(ScrollBarRender):
    """Scrollbar thumbs in whole cells: Textual draws a thumb's ends as partial-block glyphs, which
    over SSH in 256 colours read as stray blocks inside the content beside them."""

    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


class ConsoleApp(App[None]):
    """reuse-console's console."""

    CSS_PATH = "console.tcss"
    TITLE = "reuse-console"
    MODES: ClassVar = {
        "lab": LabScreen,
        "layers": LayersScreen,
        "swap": SwapScreen,
        "scans": ScanScreen,
        "jobs": JobsScreen,
    }
    DEFAULT_MODE = "lab"
    COMMANDS: ClassVar = App.COMMANDS | {ConsoleCommands}
    BINDINGS: ClassVar = [
        *(
            Binding(key, f"goto('{mode}')", label, id=f"app.screen.{mode}", group=SCREEN_GROUP)
            for key, mode, label in SCREENS
        ),
        Binding("?,f1", "help", "Help", id="app.help"),
        Binding("ctrl+p", "command_palette", "Palette", show=False, priority=True, id="app.palette"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, id="app.quit"),
        Binding("ctrl+c", "help_quit", show=False, system=True, id="app.help_quit"),
    ]

    def __init__(self, config: ConsoleConfig) -> None:
        super().__init__()
        ScrollBar.renderer = CellScrollBarRender  # class-wide: every scrollbar of the console
        self.config = config
        self.listing: LabListing | None = None  # the Lab screen's latest read, for the palette

    @property
    def lab(self) -> Lab:
        return self.config.lab

    @property
    def lab_label(self) -> str:
        if self.config.lab_label is not None:
            return self.config.lab_label
        root = self.lab.root
        try:
            return str(root.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(root).replace(str(Path.home()), "~", 1)

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.config.keymap:
            self.set_keymap(self.config.keymap)

    # -- navigation ----------------------------------------------------------------------------

    def action_goto(self, mode: str) -> None:
        self.goto(mode)

    def goto(self, mode: str, method: str | None = None, *args: Any) -> None:
        """Show the screen of `mode`; then call `method(*args)` on it once it is mounted."""

        async def go() -> None:
            await self.switch_mode(mode)
            if method is not None:
                getattr(self.screen, method)(*args)

        self.call_later(go)

    def action_help(self) -> None:
        """Open the help of the screen shown now (the help screen itself closes on its own keys)."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen.for_screen(self.screen))

    def open_view(self, kind: str, obj_id: str) -> None:
        """Open a grid, plan, run or comparison in its own view, on top of the current screen."""
        self.push_screen(VIEWS[kind](obj_id))

    def open_layers(self, checkpoint: str, compare_with: str | None = None) -> None:
        self.goto("layers", "open_checkpoint", checkpoint, compare_with)

    def open_scan(self, scan: str) -> None:
        self.goto("scans", "open_scan", scan)

    def open_comparison(self, comparison: str) -> None:
        self.goto("scans", "open_comparison", comparison)

    def open_job(self, job: str) -> None:
        self.goto("jobs", "open_job", job)

    def open_swap(self, recipient: str | None = None, donor: str | None = None, data: str | None = None) -> None:
        self.goto("swap", "preset", recipient, donor, data)


def parse_keymap(text: str) -> dict[str, str]:
    """`REUSE_KEYMAP="app.screen.lab=f1,swap.evaluate=e"` -> {binding id: key}; bad items are a UserError."""
    from reuse_console.store.errors import UserError

    keymap: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        binding_id, sep, key = item.partition("=")
        if not sep or not binding_id.strip() or not key.strip():
            raise UserError(f"REUSE_KEYMAP item {item!r}: write BINDING_ID=KEY (ids are listed in docs/console.md)")
        keymap[binding_id.strip()] = key.strip()
    return keymap


def run_console(lab: Path | None, mouse: bool = True) -> None:
    """Open the console on `lab` (else $REUSE_LAB, else ./lab); `mouse=False` for --no-mouse.

    Keys can be remapped by binding id with $REUSE_KEYMAP (see `parse_keymap`).
    """
    keymap = parse_keymap(os.environ.get("REUSE_KEYMAP", ""))
    config = ConsoleConfig(lab=Lab.from_option(lab), mouse=mouse, keymap=keymap)
    ConsoleApp(config).run(mouse=mouse)
