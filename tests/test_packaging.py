"""What a user installs is what we test: a wheel built from the tree, installed (not editable)
into a fresh virtual environment, runs `reuse-console --help` and real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from package_tree import ROOT, package_dirs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (found,) = out.glob("reuse_console-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed. The dependencies (torch is 5 GB) come from this
    environment's site-packages through a .pth line; reuse_console itself only from the wheel."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    py = env_dir / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "_deps_from_dev_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return env_dir


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for package, folder in package_dirs().items():
        prefix = package.replace(".", "/")
        for path in (ROOT / folder).rglob("*.py"):
            member = f"{prefix}/{path.relative_to(ROOT / folder).as_posix()}"
            if member not in names:
                missing.append(member)
    assert missing == []
    assert {"reuse_console/store/SCHEMA.md", "reuse_console/tui/console.tcss"} <= names


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REUSE_LAB")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [str(venv / "bin" / "reuse-console"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_installed_package_comes_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import reuse_console.tui.cli as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert out.stdout.strip().startswith(str(venv)), out.stdout


def test_installed_console_runs_help_and_real_commands(venv: Path, tmp_path: Path) -> None:
    help_ = _run(venv, "--help", cwd=tmp_path)
    assert help_.returncode == 0, help_.stderr
    for command in ("train", "scan", "grid", "plan", "jobs", "demo"):
        assert command in help_.stdout
    lab = tmp_path / "lab"
    steps = [
        ("data", "phantom", "--out", str(tmp_path / "ph"), "--subjects", "3", "--scale", "0.25", "--progress", "none"),
        (
            "--lab",
            str(lab),
            "data",
            "import",
            str(tmp_path / "ph"),
            "--name",
            "ph",
            "--size",
            "32",
            "--val-subjects",
            "1",
            "--progress",
            "none",
        ),
        (
            "--lab",
            str(lab),
            "train",
            "--data",
            "ph",
            "--arch",
            "unet",
            "--arch-config",
            '{"base_width": 4}',
            "--epochs",
            "1",
            "--name",
            "m",
            "--progress",
            "none",
        ),
    ]
    for args in steps:
        done = _run(venv, *args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
    listing = _run(venv, "--lab", str(lab), "ls", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    ids = {(row["kind"], row["id"]) for row in json.loads(listing.stdout)}
    assert {("datasets", "ph"), ("checkpoints", "m"), ("runs", "m")} <= ids
    layers = _run(venv, "--lab", str(lab), "layers", "m", cwd=tmp_path)
    assert layers.returncode == 0 and "18" in layers.stdout, layers.stderr
