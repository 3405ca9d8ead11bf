"""The package list, derived from the tree so no module can be left out of a wheel.

pyproject.toml maps the import packages onto the top-level folders (`package-dir`); every folder
with an `__init__.py` below one of them is a package of the wheel. tests/test_packaging.py builds
the wheel and checks that it holds every module of the tree.
"""

from __future__ import annotations

import sys

from setuptools import find_packages, setup

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 builds get tomli from build-system.requires
    import tomli as tomllib

with open("pyproject.toml", "rb") as fh:
    PACKAGE_DIR: dict[str, str] = tomllib.load(fh)["tool"]["setuptools"]["package-dir"]

packages = sorted(
    {name for name in PACKAGE_DIR}
    | {f"{name}.{sub}" for name, folder in PACKAGE_DIR.items() for sub in find_packages(where=folder)}
)

setup(packages=packages)
