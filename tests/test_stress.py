"""The reduced stress run of `make test`: real `reuse-console` processes SIGKILLed at random moments
(import, train, scan, grid), every lab file checked after each kill, the work finished with
`--resume` and compared with an uninterrupted run. The full run: `python bench/stress.py`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

STRESS = Path(__file__).resolve().parents[1] / "bench" / "stress.py"


def _stress_module():
    spec = importlib.util.spec_from_file_location("reuse_stress", STRESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_commands_resume_to_the_uninterrupted_result(tmp_path: Path) -> None:
    stress = _stress_module()
    lines: list[str] = []
    tallies = stress.run_stress(["import", "train", "scan", "grid"], kills=2, seed=1, keep=tmp_path, log=lines.append)
    failures = [f for t in tallies.values() for f in t.failures]
    assert failures == [], "\n".join(failures)
    for name, tally in tallies.items():
        assert tally.kills >= 2, f"{name}: only {tally.kills} kills"
        assert tally.compared >= 1, f"{name}: no result compared with the reference"
        assert tally.files > 0, f"{name}: no lab file checked"
