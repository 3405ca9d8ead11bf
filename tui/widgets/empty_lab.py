"""What a missing or empty lab shows: how to start, not an error."""

from __future__ import annotations

import shlex

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from reuse_console.store.lab import Lab


def start_commands(lab: Lab) -> list[tuple[str, str]]:
    """(what, command) pairs that fill a lab, with the lab named so they can be pasted as is."""
    at = f"--lab {shlex.quote(str(lab.root))}"
    return [
        ("The demo: a phantom data set, small UNets, a scan and comparisons:", f"reuse-console {at} demo --quick"),
        ("Or step by step, a phantom data set first:", "reuse-console data phantom --out phantom/acdc"),
        ("", f"reuse-console {at} data import phantom/acdc --format acdc --name acdc"),
        (
            "then a model (or press 5 for Jobs, then t):",
            f"reuse-console {at} train --arch unet --task seg --data acdc --epochs 5 --name unet-seg",
        ),
    ]


class EmptyLab(Static):
    """The Lab screen's body while the lab holds nothing."""

    def __init__(self, lab: Lab, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lab = lab

    def show(self, exists: bool) -> None:
        """Render the guide; `exists` says whether the folder is there at all."""
        head = "is empty" if exists else "does not exist yet"
        parts: list[Text] = [Text.assemble(("The lab ", ""), (str(self.lab.root), "bold"), (f" {head}.", ""), "\n")]
        for what, command in start_commands(self.lab):
            if what:
                parts.append(Text(what))
            parts.append(Text(f"  {command}", style="bold cyan"))
        parts.append(Text("\nThis screen checks the lab every few seconds; Ctrl+R reads it now.", style="dim"))
        self.update(Group(*parts))
