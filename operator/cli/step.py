"""``orchest step``: run one step in the current directory; the entrypoint of a step's container.

The operator's Job and the local runner both start this command, with the working directory set to the
shared pipeline directory and the merged parameters in ``ORCHEST_PARAMETERS``. On failure it leaves a
short JSON in the termination log, which Kubernetes turns into the container's termination message and
the operator copies into the step's ``failure``. With ``$ORCHEST_CACHE`` (set by the operator for a
cached step) it first asks the step cache and, on a hit, exits at once with a termination message that the
operator records as ``Cached``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchest_operator.cache.handoff import ENV_CACHE, Handoff
from orchest_operator.cache.pod import PodCache
from orchest_operator.executor import (
    ENV_PARAMETERS,
    ENV_RUN,
    ENV_STEP,
    StepResult,
    run_step,
    termination_message,
)

ENV_TERMINATION_LOG = "ORCHEST_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "step",
        help="run one step in the current directory (the entrypoint of a step's container)",
        description="Run one step file in the current directory. Parameters come from ORCHEST_PARAMETERS "
        "(a JSON object). On failure, a JSON summary is written to the termination log "
        f"(${ENV_TERMINATION_LOG}, default {DEFAULT_TERMINATION_LOG}) and the exit code is 1.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=handle)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", required=True, help="the step file, relative to the current directory")
    parser.add_argument("--step", default=os.environ.get(ENV_STEP), help=f"step name (default: ${ENV_STEP})")
    parser.add_argument("--run", default=os.environ.get(ENV_RUN), help=f"run name (default: ${ENV_RUN})")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where the executed notebook goes (default: .orchest/runs/RUN)",
    )


def handle(args: argparse.Namespace) -> int:
    if not args.step or not args.run:
        missing = "--step" if not args.step else "--run"
        return _failed(StepResult(False, f"{missing} is required (or set ${ENV_STEP} and ${ENV_RUN})"))
    try:
        parameters = _parameters(os.environ.get(ENV_PARAMETERS, ""))
    except ValueError as err:
        return _failed(StepResult(False, f"${ENV_PARAMETERS} {err}"))
    workdir = Path.cwd()
    output_dir = args.output_dir or Path(".orchest", "runs", args.run)
    print(f"orchest: step {args.step} of run {args.run}: {args.file}", flush=True)
    cache = _cache(workdir, args.run)
    if cache is not None and (hit := cache.before(sys.stdout)) is not None:
        _write_termination_log(hit)
        return 0
    result = run_step(
        args.file,
        workdir=workdir,
        step=args.step,
        run=args.run,
        parameters=parameters,
        notebook_output=workdir / output_dir / f"{args.step}.ipynb",
        log=sys.stdout,
    )
    if result.ok:
        print(f"orchest: step {args.step} succeeded", flush=True)
        if cache is not None:
            cache.after(sys.stdout)
        return 0
    return _failed(result)


def _parameters(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _cache(workdir: Path, run: str) -> PodCache | None:
    """The step's cache when the operator handed one over (``$ORCHEST_CACHE``); the local runner decides
    before starting the step and sets none."""
    text = os.environ.get(ENV_CACHE)
    if not text:
        return None
    try:
        return PodCache(Handoff.of_wire(text), workdir, run)
    except ValueError as err:
        print(f"orchest: cache not used: {err}", file=sys.stderr, flush=True)
        return None


def _failed(result: StepResult) -> int:
    print(f"orchest: step failed: {result.message}", file=sys.stderr, flush=True)
    _write_termination_log(termination_message(result))
    return 1


def _write_termination_log(text: str) -> None:
    path = os.environ.get(ENV_TERMINATION_LOG, DEFAULT_TERMINATION_LOG)
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as err:  # outside a container there may be no termination log; the log line is enough
        print(f"orchest: cannot write the termination log {path}: {err.strerror or err}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m orchest_operator.cli.step``: what the local runner starts per step,
    without loading every other command."""
    parser = argparse.ArgumentParser(prog="orchest step")
    add_arguments(parser)
    return handle(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
