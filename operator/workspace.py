"""Isolated workspaces: a run's own copy of the pipeline's directory, made before its first step.

Runs of one pipeline share its directory (and, on a cluster, its volume), so by default they queue. A run
with ``workspace: Isolated`` copies the directory to ``.orchest/runs/<run>/workspace/`` first and its
steps work there, so any number of them can run at once without clobbering each other's files. The copy
leaves out ``.orchest`` (earlier runs' records and workspaces) and the ``workspaceExclude`` globs; a glob
that matches a directory leaves out all of it. Globs are matched with ``fnmatch`` against the path
relative to the pipeline's directory, so ``*`` also crosses ``/`` (``data/*`` leaves out all of data/).
Symbolic links are copied as links. The executed notebooks and the run record stay in
``.orchest/runs/<run>/``, where they are for a shared run.

Locally the runner calls :func:`copy`; on a cluster a Job of the step-runner image runs
``python -m orchest_operator.workspace`` before the run's first step.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ORCHEST_DIR = ".orchest"
WORKSPACE_DIR = "workspace"


def workspace_of(base: Path | PurePosixPath, run: str) -> Path | PurePosixPath:
    """Where run ``run`` of the pipeline in ``base`` works when it is isolated."""
    return base / ORCHEST_DIR / "runs" / run / WORKSPACE_DIR


def excluded(relative: str, globs: Sequence[str]) -> bool:
    return relative == ORCHEST_DIR or any(fnmatch.fnmatchcase(relative, g.rstrip("/")) for g in globs)


@dataclass(frozen=True)
class Copied:
    files: int
    bytes: int


def copy(source: Path, target: Path, exclude: Sequence[str] = ()) -> Copied:
    """Copy ``source`` into ``target`` (created; it must not exist yet, or be an earlier partial copy,
    which is removed first: a copy that died half way is made again, never finished on top)."""
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a directory")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files = size = 0
    for folder, dirs, names in os.walk(source, onerror=_raise):
        here = Path(folder)
        rel_dir = here.relative_to(source)
        kept_dirs = []
        for name in sorted(dirs):
            relative = (rel_dir / name).as_posix()
            if excluded(relative, exclude):
                continue
            if (here / name).is_symlink():
                os.symlink(os.readlink(here / name), target / relative)
                continue
            (target / relative).mkdir()
            kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(names):
            relative = (rel_dir / name).as_posix()
            if excluded(relative, exclude):
                continue
            path = here / name
            if path.is_symlink():
                os.symlink(os.readlink(path), target / relative)
                continue
            shutil.copy2(path, target / relative)
            files += 1
            size += path.stat().st_size
    return Copied(files, size)


def _raise(err: OSError) -> None:
    raise err


def main(argv: Sequence[str] | None = None) -> int:
    """The workspace Job's entrypoint:
    ``python -m orchest_operator.workspace SOURCE RUN [--exclude G]... [--from-run EARLIER]``."""
    parser = argparse.ArgumentParser(
        prog="python -m orchest_operator.workspace", description="Copy a pipeline's directory for one run."
    )
    parser.add_argument("source", type=Path, help="the pipeline's directory")
    parser.add_argument("run", help="the run whose workspace this is")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB")
    parser.add_argument(
        "--from-run",
        metavar="RUN",
        help="start from this earlier run's workspace (a rerun reuses its outputs)",
    )
    args = parser.parse_args(argv)
    target = Path(workspace_of(args.source, args.run))
    source = Path(workspace_of(args.source, args.from_run)) if args.from_run else args.source
    try:
        done = copy(source, target, args.exclude)
    except OSError as err:
        print(f"orchest: cannot copy {source} to {target}: {err}", file=sys.stderr)
        return 1
    print(f"orchest: copied {done.files} file(s), {done.bytes} bytes, to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
