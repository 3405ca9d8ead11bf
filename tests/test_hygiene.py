"""Hygiene of the layout: the engine and the store never load the UI (they run headless, in jobs
and on clusters); the engine's stages keep their dependency order (import-linter); no import
cycles; every command group is registered."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from package_tree import ROOT, lint_imports, mirror, package_dirs

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


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mirror(tmp_path_factory.mktemp("tree"))


def test_import_contracts_are_kept(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_lower_stage_importing_a_higher_one_breaks_the_contract(tree: Path, tmp_path: Path) -> None:
    """The contract is real: a data module that imports training (inside a function) is caught."""
    broken = mirror(tmp_path / "broken")
    victim = broken / "reuse_console" / "engine" / "data" / "augment.py"
    victim.write_text(victim.read_text() + "\n\ndef _late():\n    from reuse_console.engine.training import train\n")
    result = lint_imports(broken)
    assert result.returncode == 1
    assert "reuse_console.engine.data.augment -> reuse_console.engine.training.train" in result.stdout


def _modules() -> dict[str, Path]:
    """Every module of the import packages, by dotted name (the folders do not nest)."""
    out: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules `name` imports at run time, at any depth (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over every import, deferred ones included."""
    modules = _modules()
    graph = {m: _imports(m, p, set(modules)) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert len(graph) > 100
    assert cycles == []


def test_engine_top_holds_few_modules_and_the_stages() -> None:
    top = sorted(p.stem for p in (ROOT / "engine").glob("*.py"))
    assert len(top) <= 12, top
    stages = sorted(p.parent.name for p in (ROOT / "engine").glob("*/__init__.py"))
    assert stages == sorted(
        ["core", "data", "models", "evaluation", "swaps", "compare", "reuse", "training", "grids", "report", "jobs"]
    )


def test_every_command_module_is_registered() -> None:
    """A command module that cli.py does not register would be silently missing from the CLI."""
    source = (ROOT / "tui" / "cli.py").read_text()
    registered = next(
        {e.id for e in node.iter.elts}  # type: ignore[attr-defined]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.For) and ast.unparse(node.target) == "group"
    )
    modules = {p.stem for p in (ROOT / "tui" / "commands").glob("*.py")} - {"__init__"}
    assert registered == modules
