"""Shared fixtures: a fresh lab per test, and torch kept to one thread on the 2-core budget."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def lab(tmp_path: Path):
    from reuse_console.store.lab import Lab

    return Lab(tmp_path / "lab")
