"""The release version: read from pyproject.toml, the one place it is set, and stamped everywhere else.

``python -m release.version`` prints it; ``--set 0.2.0`` writes it into pyproject.toml and stamps every
copy (the chart's version and appVersion, the kustomize image tags and the image references in manifests/,
the Argo CD Application's revision, the Dockerfiles' build comments, the README's install commands);
``--check`` fails, naming each file, when a copy disagrees; ``--check --tag v0.2.0`` also checks a git tag
(the release workflow runs it, so a tag never publishes images that the manifests do not name).
``make version VERSION=0.2.0`` is the same as ``--set``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "ghcr.io/orchest-operator"
IMAGES = ("orchest-operator", "orchest-step-runner", "orchest-jupyter-server")
# SemVer, as Helm requires of a chart version (and PEP 440 accepts for these forms).
VERSION = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-(?:rc|alpha|beta)\.?\d+)?$")
_V = r"[0-9A-Za-z.\-]+"


@dataclass(frozen=True)
class Copy:
    """One file's copies of the version: a pattern whose group 2 is the version, between groups 1 and 3."""

    path: str
    pattern: re.Pattern[str]

    def found(self, root: Path) -> list[str]:
        return [m.group(2) for m in self.pattern.finditer((root / self.path).read_text())]

    def stamp(self, root: Path, version: str) -> None:
        path = root / self.path
        path.write_text(self.pattern.sub(lambda m: f"{m.group(1)}{version}{m.group(3)}", path.read_text()))


def _image_refs(path: str) -> Copy:
    return Copy(path, re.compile(rf"({re.escape(REGISTRY)}/(?:{'|'.join(IMAGES)}):)({_V})(\s|$)", re.M))


def copies(root: Path = ROOT) -> list[Copy]:
    found = [
        Copy("pyproject.toml", re.compile(rf'^(version = ")({_V})(")', re.M)),
        Copy("charts/orchest/Chart.yaml", re.compile(rf"^(version: )({_V})(\s*)$", re.M)),
        Copy("charts/orchest/Chart.yaml", re.compile(rf'^(appVersion: ")({_V})(")', re.M)),
        Copy("manifests/kustomization.yaml", re.compile(rf"^(    newTag: )({_V})(\s*)$", re.M)),
        Copy("manifests/argocd/application.yaml", re.compile(rf"^(    targetRevision: v)({_V})(\s*)$", re.M)),
        Copy("README.md", re.compile(rf"(releases/download/v)({_V})(/)")),
        Copy("README.md", re.compile(rf"(oci://{re.escape(REGISTRY)}/charts/orchest --version )({_V})(\s)")),
    ]
    for path in sorted((root / "manifests").rglob("*.yaml")) + sorted((root / "images").glob("*/Dockerfile")):
        relative = path.relative_to(root).as_posix()
        if _image_refs(relative).found(root):
            found.append(_image_refs(relative))
    return found


def current(root: Path = ROOT) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def disagreements(root: Path = ROOT) -> list[str]:
    """Each copy that is not the pyproject version, as ``path: found``; a copy that vanished counts too."""
    version = current(root)
    problems = []
    for copy in copies(root):
        found = copy.found(root)
        if not found:
            problems.append(f"{copy.path}: no version where {copy.pattern.pattern!r} expects one")
        problems += [
            f"{copy.path}: {value} (pyproject.toml says {version})" for value in found if value != version
        ]
    return problems


def stamp(version: str, root: Path = ROOT) -> None:
    if not VERSION.match(version):
        raise ValueError(f"{version!r} is not a release version such as 1.2.3 or 1.2.3-rc.1")
    for copy in copies(root):
        copy.stamp(root, version)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.version", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--set", metavar="VERSION", help="write VERSION into pyproject.toml and stamp every copy"
    )
    action.add_argument("--check", action="store_true", help="fail when a copy disagrees with pyproject.toml")
    parser.add_argument("--tag", help="with --check: the git tag being released must be v + the version")
    args = parser.parse_args(argv)
    if args.set:
        try:
            stamp(args.set)
        except ValueError as err:
            print(f"release.version: {err}", file=sys.stderr)
            return 2
        out(args.set)
        return 0
    if args.check:
        problems = disagreements()
        if args.tag and args.tag != f"v{current()}":
            problems.append(
                f"tag {args.tag} is not v{current()}: run `make version VERSION=...` and commit first"
            )
        for problem in problems:
            print(f"release.version: {problem}", file=sys.stderr)
        return 1 if problems else 0
    out(current())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
