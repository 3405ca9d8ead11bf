"""The import packages laid out as a wheel has them, for tools that walk folders (import-linter).

pyproject.toml maps `reuse_console.engine` onto the top-level `engine/` folder and so on; grimp
(import-linter's graph builder) finds a package's modules by walking its folder, so it sees only
`pkg/`. mypy cannot follow the mapping either. `mirror` copies the sources into `DEST/reuse_console/...`
as installed; `python tests/support/package_tree.py imports|mypy` runs the tool on that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def package_dirs() -> dict[str, str]:
    """The `package-dir` mapping of pyproject.toml: import package -> folder."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["setuptools"]["package-dir"]


def mirror(dest: Path) -> Path:
    """Copy every package's .py files under `dest` in their installed layout; returns `dest`."""
    for package, folder in package_dirs().items():
        target = dest.joinpath(*package.split("."))
        for path in (ROOT / folder).rglob("*.py"):
            out = target / path.relative_to(ROOT / folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter's contracts (pyproject.toml) on a mirrored tree."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", str(ROOT / "pyproject.toml")]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, timeout=300)


def mypy(tree: Path) -> subprocess.CompletedProcess[str]:
    """Type-check the mirrored packages with the [tool.mypy] settings of pyproject.toml."""
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        "-p",
        "reuse_console",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tree, timeout=900)


def main(argv: list[str]) -> int:
    """`imports` (import-linter contracts) or `mypy`; output names files as installed
    (reuse_console/engine/... is engine/...)."""
    tools = {"imports": lint_imports, "mypy": mypy}
    if len(argv) != 1 or argv[0] not in tools:
        print(f"usage: package_tree.py {{{'|'.join(tools)}}}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        result = tools[argv[0]](mirror(Path(tmp)))
    out = result.stdout
    sys.stdout.write(out[out.find("Contracts") :] if argv[0] == "imports" and "Contracts" in out else out)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
