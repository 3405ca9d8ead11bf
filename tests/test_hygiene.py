"""The engine and the store never load the UI: they must run headless, in jobs and on clusters."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import reuse_console.engine, reuse_console.store
    names = []
    for pkg in (reuse_console.engine, reuse_console.store):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(info.name)
            names.append(info.name)
    ui = sorted(m for m in sys.modules if m == "textual" or m.startswith(("textual.", "reuse_console.tui")))
    print(json.dumps({"imported": names, "ui": ui}))
    """
)


def test_engine_and_store_never_import_the_ui() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "reuse_console.store.lab" in result["imported"]
    assert "reuse_console.engine.core.events" in result["imported"]
    assert result["ui"] == []
