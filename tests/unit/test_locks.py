"""The images' locks (images/<image>/requirements.txt) are current with pyproject.toml, and each image's
group holds everything its command imports.

`make locks` compiles each image's dependency group; these checks need no network: a lock is current when
it pins every requirement of its group within the group's specifier, names exactly the group's
requirements as its direct ones, hashes every pin and leaves out what the image's excludes.txt lists.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGES = ["operator", "step-runner", "jupyter-server"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def group(name: str) -> list[str]:
    """A dependency group's requirements, included groups expanded (PEP 735)."""
    result: list[str] = []
    for entry in PYPROJECT["dependency-groups"][name]:
        result.extend(group(entry["include-group"]) if isinstance(entry, dict) else [entry])
    return result


@dataclass
class Pin:
    version: str
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def parse_lock(text: str) -> dict[str, Pin]:
    """``uv pip compile`` output: each pin with its hashes and what required it."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := PIN.match(raw):
            current = pins.setdefault(canonicalize_name(match[1]), Pin(match[2].rstrip("\\").strip()))
        elif current and line.startswith("--hash="):
            current.hashes.append(line.removeprefix("--hash=").rstrip("\\").strip())
        elif current and line.startswith("# via"):
            current.via.extend([line.removeprefix("# via").strip()] if line != "# via" else [])
        elif current and line.startswith("#   "):
            current.via.append(line.removeprefix("#").strip())
    return pins


def lock(image: str) -> dict[str, Pin]:
    return parse_lock((ROOT / "images" / image / "requirements.txt").read_text())


def excluded(image: str) -> set[str]:
    path = ROOT / "images" / image / "excludes.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return {canonicalize_name(line.strip()) for line in lines if line.strip() and not line.startswith("#")}


@pytest.mark.parametrize("image", IMAGES)
def test_the_lock_pins_its_group_within_pyproject_specifiers(image: str) -> None:
    pins = lock(image)
    source = f"orchest-operator (pyproject.toml:{image})"
    stale = "is stale: run `make locks`"
    wanted = {canonicalize_name(Requirement(text).name): Requirement(text) for text in group(image)}
    for name, requirement in wanted.items():
        assert name in pins, f"images/{image}/requirements.txt lacks {name} {stale}"
        assert requirement.specifier.contains(pins[name].version, prereleases=True), (
            f"images/{image}/requirements.txt: {name}=={pins[name].version} is outside {requirement} {stale}"
        )
    direct = {name for name, pin in pins.items() if source in pin.via}
    assert direct == set(wanted), f"direct requirements differ from the group {image!r} {stale}"


@pytest.mark.parametrize("image", IMAGES)
def test_every_pin_has_hashes_and_nothing_excluded_is_locked(image: str) -> None:
    text = (ROOT / "images" / image / "requirements.txt").read_text()
    assert "#    make locks" in text.splitlines()[1]
    pins = lock(image)
    assert pins
    assert all(pin.hashes for pin in pins.values()), [name for name, pin in pins.items() if not pin.hashes]
    assert not excluded(image) & set(pins)


def test_the_distribution_depends_on_what_the_groups_hold() -> None:
    """`pip install orchest-operator` gets the whole CLI and the local runner: exactly the orchest groups."""
    dependencies = PYPROJECT["project"]["dependencies"]
    assert len(dependencies) == len(set(dependencies))
    grouped = {*group("operator"), *group("step-runner"), *group("cli")}
    assert set(dependencies) - grouped == set(), (
        "pyproject.toml: put each of these [project] dependencies, word for word, into the dependency group "
        "of what imports it (core, operator, step-runner or cli), then run `make locks`"
    )
    assert grouped - set(dependencies) == set(), "pyproject.toml: groups name what [project] lacks"


# Run in a fresh interpreter: import what an image's command imports, with every top-level module that
# the image's lock does not install made unimportable (an optional import then falls back, as in the image).
BLOCKER = """
import importlib, importlib.abc, importlib.metadata, json, sys
allowed = set(json.loads(sys.argv[1]))
owners = importlib.metadata.packages_distributions()
def norm(name): return name.lower().replace("_", "-").replace(".", "-")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = {norm(d) for d in owners.get(top, ())}
        if dists and not dists & allowed:
            raise ModuleNotFoundError(f"{top} is not in the image", name=name)
        return None
sys.meta_path.insert(0, Block())
for module in json.loads(sys.argv[2]):
    importlib.import_module(module)
from orchest_operator.cli import build_parser
build_parser()
exec(sys.argv[3])
"""


def imports_with_only(image: str, modules: list[str], code: str = "") -> subprocess.CompletedProcess[str]:
    allowed = [*lock(image), "orchest-operator"]
    return subprocess.run(
        [sys.executable, "-P", "-c", BLOCKER, json.dumps(allowed), json.dumps(modules), code],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_operator_imports_only_what_its_image_installs() -> None:
    done = imports_with_only("operator", ["orchest_operator.handlers", "orchest_operator.cli.operator"])
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_step_imports_only_what_the_step_runner_installs() -> None:
    code = "from orchest_operator import executor; import papermill; executor._kernel_manager_class()"
    done = imports_with_only("step-runner", ["orchest_operator.cli.step", "ipykernel.kernelapp"], code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_blocker_does_block() -> None:
    done = imports_with_only("operator", ["papermill"])
    assert done.returncode != 0
    assert "papermill is not in the image" in done.stderr


def test_parse_lock_reads_pins_hashes_and_sources() -> None:
    text = (
        "a-b==1.0 \\\n    --hash=sha256:x\n    # via\n    #   c\n    #   d (pyproject.toml:g)\n"
        "e==2\n    # via f\n"
    )
    pins: dict[str, Any] = parse_lock(text)
    assert pins["a-b"] == Pin("1.0", ["sha256:x"], ["c", "d (pyproject.toml:g)"])
    assert pins["e"] == Pin("2", [], ["f"])


def test_cluster_commands_in_the_operator_image_fail_in_one_line() -> None:
    code = "from orchest_operator.cli import main; sys.exit(main(['status', 'r1']))"
    done = imports_with_only("operator", [], code)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "orchest: the cluster commands need the kubernetes package, which this installation lacks "
        "(pip install kubernetes, or pip install orchest-operator for the whole CLI)"
    ]


def test_orchest_run_in_the_step_runner_image_fails_in_one_line() -> None:
    code = "from orchest_operator.cli import main; sys.exit(main(['run', 'pipeline.yaml']))"
    done = imports_with_only("step-runner", [], code)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "orchest: orchest run needs the rich package, which this installation lacks "
        "(pip install rich, or pip install orchest-operator for the whole CLI)"
    ]
