"""Output for the CLI: data on stdout (tables or JSON), diagnostics and progress on stderr."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def command_name() -> str:
    """How the user can type this tool now, for hints such as "open the console with ...": plain
    `reuse-console` when that is on PATH and is this program, else the path that ran it
    (`.venv/bin/reuse-console` after `make demo`, which does not activate the venv)."""
    ran = sys.argv[0] if sys.argv and os.path.basename(sys.argv[0]) == "reuse-console" else ""
    found = shutil.which("reuse-console")
    if not ran or (found and os.path.realpath(found) == os.path.realpath(ran)):
        return "reuse-console"
    rel = os.path.relpath(ran)
    return rel if not rel.startswith("..") else os.path.abspath(ran)


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt(value: Any, digits: int = 3) -> str:
    """Format a number for a table cell (NaN and None shown as '-')."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A cancelled job gets SIGTERM: stop like Ctrl-C, so runs say "cancelled" and finished work is kept."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
