"""Ids derived from a run's name that several stages read (kept torch-free: the console's forms
and the CLI's defaults import them at start)."""

from __future__ import annotations

INIT_SUFFIX = ".init"


def init_name(run: str) -> str:
    """The id of a run's initial-weights checkpoint (`<run>.init`: the scan donor `init`)."""
    return f"{run}{INIT_SUFFIX}"
