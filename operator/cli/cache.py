"""``orchest plan`` (what a run would reuse and why the rest runs) and ``orchest cache prune``."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchest_operator.builders.plan import plan_pod
from orchest_operator.cache.index import CacheError, Index
from orchest_operator.cache.plan import Planned, plan
from orchest_operator.cli import CliError
from orchest_operator.cli.pipeline import add_run_options, run_request
from orchest_operator.dag import Dag, PlanError
from orchest_operator.models import PipelineRunSpec, PipelineSpec, RunDocument
from orchest_operator.pipelinefile import load, schema_problems
from orchest_operator.settings import Settings, SettingsError

DEFAULT_KEEP_DAYS = 30


def register(subparsers: argparse._SubParsersAction) -> None:
    planner = subparsers.add_parser(
        "plan",
        help="say which steps a run would reuse from the cache and why the others run; runs nothing",
        description="For each selected step: `cached` (and the run it reuses) or `run` and the first thing "
        "that differs from its latest execution. Takes the options of `orchest run`. With --cluster, FILE "
        "is a PipelineRun manifest and the answer comes from a short pod that mounts the pipeline's volume.",
    )
    planner.add_argument("file", type=Path, metavar="PIPELINE.yaml|RUN.yaml")
    add_run_options(planner, default_parallelism=0)
    planner.add_argument("--output", choices=["table", "json"], default="table")
    cluster = planner.add_argument_group("on a cluster")
    cluster.add_argument(
        "--cluster",
        action="store_true",
        help="FILE is a PipelineRun manifest: plan it from the Pipeline on the cluster and its volume, in "
        "a short pod (the run options above are taken from the manifest)",
    )
    cluster.add_argument(
        "--image", help="image of the planning pod (default: the pipeline's image, else the step runner's)"
    )
    cluster.add_argument(
        "--default-step-image",
        help="the operator's default step image, part of the key of steps that name none "
        "(default: $ORCHEST_DEFAULT_STEP_IMAGE, else this release's step runner image, as the operator's)",
    )
    cluster.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="default 300")
    cluster.add_argument("-n", "--namespace", help="default: the manifest's, else the context's namespace")
    cluster.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
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
    if args.cluster:
        return _plan_on_cluster(args)
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


def show(rows: list[Planned] | list[dict[str, Any]], output: str) -> None:
    wired = [row.wire() if isinstance(row, Planned) else row for row in rows]
    if output == "json":
        print(json.dumps({"steps": wired}, indent=2))
        return
    width = max((len(row["step"]) for row in wired), default=4)
    for row in wired:
        detail = f"from run {row.get('cachedFrom')}" if row["action"] == "cached" else row["reason"]
        print(f"{row['step']:<{width}}  {row['action']:<6}  {detail}".rstrip())
    reused = sum(row["action"] == "cached" for row in wired)
    print(f"{len(wired) - reused} to run, {reused} cached")


def _plan_on_cluster(args: argparse.Namespace) -> int:
    from orchest_operator.remote import Cluster, RemoteError

    try:
        data = yaml.safe_load(args.file.read_text(encoding="utf-8"))
        document = RunDocument.model_validate(data)
    except FileNotFoundError:
        raise CliError(f"{args.file}: no such file", 2) from None
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"{args.file}: cannot read it: {err}", 2) from None
    except ValidationError as err:
        raise CliError(f"{args.file}: {'; '.join(schema_problems(err, RunDocument))}", 2) from None
    request = document.spec
    try:
        cluster = Cluster.connect(args.namespace or document.metadata.namespace, args.kubeconfig)
        pipeline = cluster.get("pipelines", request.pipeline_ref.name)
        try:
            spec = PipelineSpec.model_validate(pipeline.get("spec") or {})
        except ValidationError as err:
            raise CliError(f"pipeline {request.pipeline_ref.name!r} is invalid: {err}") from None
        if spec.volume is None:
            raise CliError(f"pipeline {request.pipeline_ref.name!r} has no spec.volume to plan from", 2)
        try:
            Dag.of(spec).select(request.selection.mode, request.selection.steps)
        except PlanError as err:
            raise CliError(f"{args.file}: {'; '.join(err.problems)}", 2) from None
        try:
            settings = Settings.from_env()
        except SettingsError as err:
            raise CliError(str(err), 2) from None
        manifest = plan_pod(
            name=f"orchest-plan-{secrets.token_hex(4)}",
            namespace=cluster.namespace,
            spec=spec,
            request=request,
            image=args.image or spec.image or settings.default_step_image,
            default_image=args.default_step_image or settings.default_step_image,
        )
        phase, log = cluster.run_pod(manifest, args.timeout)
    except RemoteError as err:
        raise CliError(str(err)) from None
    answer = _last_json(log)
    if phase != "Succeeded" or answer is None or "steps" not in answer:
        why = (answer or {}).get("error") or log.strip()[-500:] or f"the planning pod {phase}"
        raise CliError(f"planning on the cluster failed: {why}")
    show(answer["steps"], args.output)
    return 0


def _last_json(log: str) -> dict[str, Any] | None:
    for line in reversed(log.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


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
