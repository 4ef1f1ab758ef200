"""``orchest plan`` (what a run would reuse and why the rest runs) and ``orchest cache prune``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from orchest_operator.cache.index import CacheError, Index
from orchest_operator.cache.plan import Planned, plan
from orchest_operator.cli import CliError
from orchest_operator.cli.pipeline import add_run_options, run_request
from orchest_operator.dag import Dag, PlanError
from orchest_operator.models import PipelineRunSpec
from orchest_operator.pipelinefile import load, schema_problems

DEFAULT_KEEP_DAYS = 30


def register(subparsers: argparse._SubParsersAction) -> None:
    planner = subparsers.add_parser(
        "plan",
        help="say which steps a run would reuse from the cache and why the others run; runs nothing",
        description="For each selected step: `cached` (and the run it reuses) or `run` and the first thing "
        "that differs from its latest execution. Takes the options of `orchest run`. With --cluster, FILE "
        "is a PipelineRun manifest and the answer comes from a short pod that mounts the pipeline's volume.",
    )
    planner.add_argument("file", type=Path, metavar="PIPELINE.yaml")
    add_run_options(planner, default_parallelism=0)
    planner.add_argument("--output", choices=["table", "json"], default="table")
    planner.set_defaults(handler=handle_plan)

    cache = subparsers.add_parser("cache", help="manage the step cache of a pipeline directory")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    prune = actions.add_parser(
        "prune",
        help="delete cache records not used for a while, and every unreadable one",
        description="Trim the index in .orchest/cache/ beside the pipeline file. The files the steps wrote "
        "are never touched.",
    )
    prune.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    prune.add_argument(
        "--keep-days",
        type=float,
        default=DEFAULT_KEEP_DAYS,
        metavar="N",
        help=f"keep records used in the last N days (default {DEFAULT_KEEP_DAYS}; 0 empties the cache)",
    )
    prune.set_defaults(handler=handle_prune)


def handle_plan(args: argparse.Namespace) -> int:
    loaded = load(args.file)
    if not loaded.ok or loaded.document is None:
        for problem in loaded.problems:
            print(f"{args.file}: {problem}", file=sys.stderr)
        return 2
    document = loaded.document
    try:
        request = PipelineRunSpec.model_validate(run_request(args, document.metadata.name))
        selected = Dag.of(document.spec).select(request.selection.mode, request.selection.steps)
    except ValidationError as err:
        raise CliError(f"{args.file}: {'; '.join(schema_problems(err, PipelineRunSpec))}", 2) from None
    except PlanError as err:
        raise CliError(f"{args.file}: {'; '.join(err.problems)}", 2) from None
    try:
        rows = plan(
            loaded.base,
            document.spec,
            document.metadata.name,
            selected,
            parameters=request.parameters,
            use_cache=request.cache,
        )
    except CacheError as err:
        raise CliError(f"{args.file}: {err}", 2) from None
    show(rows, args.output)
    return 0


def show(rows: list[Planned], output: str) -> None:
    if output == "json":
        print(json.dumps({"steps": [row.wire() for row in rows]}, indent=2))
        return
    width = max((len(row.step) for row in rows), default=4)
    for row in rows:
        action = "cached" if row.cached else "run"
        detail = f"from run {row.cached_from}" if row.cached else row.reason
        print(f"{row.step:<{width}}  {action:<6}  {detail}".rstrip())
    reused = sum(row.cached for row in rows)
    print(f"{len(rows) - reused} to run, {reused} cached")


def handle_prune(args: argparse.Namespace) -> int:
    if args.keep_days < 0:
        raise CliError("--keep-days must be 0 or more", 2)
    if not args.pipeline.is_file():
        raise CliError(f"{args.pipeline}: no such file", 2)
    index = Index(args.pipeline.parent)
    try:
        deleted, kept = index.prune(args.keep_days)
    except CacheError as err:
        raise CliError(str(err)) from None
    print(f"{index.root}: deleted {deleted} record(s), kept {kept}")
    return 0
