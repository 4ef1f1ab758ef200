"""The ``orchest`` command. Each module of this package that defines ``register(subparsers)`` adds its
subcommands, so commands live beside nothing but their own argument handling."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence


class CliError(Exception):
    """A problem the user can fix: printed as one line, exit code ``code``, never a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchest", description="Run pipelines of notebooks and scripts.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):  # __main__ runs the command when imported
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as err:
        print(f"orchest: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
