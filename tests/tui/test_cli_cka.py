"""`reuse-console cka` as a user runs it: two tiny trained UNets, the table, --json, show, ls."""

from __future__ import annotations

import json

import pytest
from toydata import write_toy  # noqa: E402

TINY = ["--arch-config", '{"base_width": 4}', "--batch", "4", "--device", "cpu", "--progress", "none"]


@pytest.mark.slow
def test_cka_of_two_trained_models(lab, cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    write_toy(lab, per_subject=6)
    at = ["--lab", str(lab.root)]
    for name, task, seed in (("seg", "seg", "1"), ("ae", "ae", "2")):
        code, _, err = cli(
            *at, "train", "--data", "toy", "--epochs", "1", "--task", task, "--seed", seed, "--name", name, *TINY
        )
        assert code == 0, err

    code, out, err = cli(*at, "cka", "seg", "ae", "--data", "toy", "--device", "cpu", "--progress", "none")
    assert code == 0, err
    assert "stored as comparison cka-seg-ae" in err
    lines = out.splitlines()
    assert "1 = seg, 2 = ae" in lines[0] and "6 slices" in lines[0]
    assert max(len(line) for line in lines) <= 80
    assert sum(1 for line in lines if line.split()[:1] and line.split()[0] in {str(i) for i in range(1, 19)}) == 18

    code, out, err = cli(*at, "cka", "seg", "seg.last", "ae", "--data", "toy", "--device", "cpu", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["measure"] == "cka" and result["samples"] == 6 and result["features"] == "pooled"
    assert [(p["a"], p["b"]) for p in result["pairs"]] == [("seg", "seg.last"), ("seg", "ae"), ("seg.last", "ae")]
    rows = result["pairs"][1]["rows"]
    assert len(rows) == 23 and rows[0]["layer"] == 1 and rows[-1]["layer"] == "head"
    assert all(r["linear"] is None or -1e-9 <= r["linear"] <= 1 + 1e-9 for r in rows)

    code, out, err = cli(*at, "cka", "seg", "ae", "--data", "toy", "--features", "pixels", "--pixels", "16", "--json")
    assert code == 0, err
    assert json.loads(out)["samples"] == 6 * 16

    code, out, _ = cli(*at, "show", "cka-seg-ae", "--json")
    assert code == 0 and json.loads(out)["pairs"][0]["rows"][0]["layer"] == 1
    code, out, _ = cli(*at, "show", "cka-seg-ae")
    assert code == 0 and "1-2" in out and "lin" in out
    code, out, _ = cli(*at, "ls", "comparisons")
    assert code == 0 and "CKA seg, ae on toy" in out
