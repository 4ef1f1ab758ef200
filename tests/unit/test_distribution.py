"""The wheel holds every subpackage of the operator: the list in pyproject.toml is written by hand (the
import name differs from the folder's), and an editable install finds a missing one anyway, so only a
built image would notice."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_in_the_distribution() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {folder: name for name, folder in setuptools["package-dir"].items()}
    found = {
        ".".join([folders[init.relative_to(ROOT).parts[0]], *init.relative_to(ROOT).parts[1:-1]])
        for folder in folders
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert found - set(setuptools["packages"]) == set(), "add these to [tool.setuptools] packages"
