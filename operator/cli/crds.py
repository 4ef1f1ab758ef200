"""``orchest crds``: print the CRDs generated from the models, or write them where the repository keeps
them (``manifests/crds`` for kubectl, ``charts/orchest/crds`` for Helm), so the committed copies never
drift from the models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orchest_operator.cli import CliError
from orchest_operator.crds import all_crds, to_yaml

TARGETS = (Path("manifests", "crds"), Path("charts", "orchest", "crds"))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crds",
        help="print the CustomResourceDefinitions (or --write them into the repository)",
        description="Print every CRD as one YAML stream, ready for `kubectl apply -f -`.",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="write them to manifests/crds/ and charts/orchest/crds/ of the repository instead",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="the repository root (default: the nearest directory above the current one with both "
        "manifests/ and charts/orchest/)",
    )
    parser.set_defaults(handler=handle)


def rendered() -> dict[str, str]:
    """File name → YAML text, exactly as committed."""
    return {name: to_yaml(crd) for name, crd in all_crds().items()}


def find_root(start: Path) -> Path:
    for candidate in (start, *start.parents):
        if (candidate / "manifests").is_dir() and (candidate / "charts" / "orchest").is_dir():
            return candidate
    raise CliError(f"no repository root (with manifests/ and charts/orchest/) above {start}; use --root")


def handle(args: argparse.Namespace) -> int:
    files = rendered()
    if not args.write:
        sys.stdout.write("---\n".join(files.values()))
        return 0
    root = args.root or find_root(Path.cwd().resolve())
    for target in TARGETS:
        directory = root / target
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (directory / name).write_text(text, encoding="utf-8")
        except OSError as err:
            raise CliError(f"cannot write {directory}: {err.strerror or err}") from None
        for name in files:
            print(directory / name)
    return 0
