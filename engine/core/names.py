"""Ids derived from a run's name that several stages read (kept torch-free: the console's forms
and the CLI's defaults import them at start)."""

from __future__ import annotations

INIT_SUFFIX = ".init"
INIT_DONOR = "init"  # a scan donor: the recipient run's own initial weights
RANDOM_DONOR = "random:"  # a scan donor `random:SEED`: a fresh draw of the recipient's architecture
REINIT_DONORS = (
    (INIT_DONOR, "the recipient run's own initial weights (re-initialisation)"),
    (f"{RANDOM_DONOR}0", "a fresh draw of the recipient's architecture (seed 0)"),
)


def init_name(run: str) -> str:
    """The id of a run's initial-weights checkpoint (`<run>.init`: the scan donor `init`)."""
    return f"{run}{INIT_SUFFIX}"
