"""Shared fixtures for the CLI tests: run the console's entry point in-process."""

from __future__ import annotations

from collections.abc import Callable

import pytest

CliRun = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CliRun:
    """`cli(*argv)` runs `reuse_console.tui.cli.main(argv)` and returns (exit code, stdout, stderr)."""
    from reuse_console.tui.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
