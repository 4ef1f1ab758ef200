"""``orchest submit``, ``status``, ``logs``, ``cancel`` and ``rerun``: runs on a cluster, through the
current kubeconfig (or the in-cluster service account)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchest_operator.cli import CliError
from orchest_operator.cli.pipeline import add_run_options, run_request
from orchest_operator.dag import Dag, PlanError
from orchest_operator.models import API_VERSION, PipelineRunStatus, Priority, RunPhase, StepPhase
from orchest_operator.pipelinefile import load

if TYPE_CHECKING:  # the kubernetes client takes a second to import: only the cluster commands pay it
    from orchest_operator.remote import Cluster

Handler = Callable[[argparse.Namespace], int]


def _cluster_command(handler: Handler) -> Handler:
    """Turn the cluster's errors (not found, forbidden, unreachable) into one line and exit code 1."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            from orchest_operator.remote import RemoteError
        except ModuleNotFoundError as err:  # the images install only what their own command imports
            raise CliError(
                f"the cluster commands need the {err.name} package, which this installation lacks "
                f"(pip install {err.name}, or pip install orchest-operator for the whole CLI)"
            ) from None

        try:
            return handler(args)
        except RemoteError as err:
            raise CliError(str(err)) from None

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="apply a Pipeline to the cluster and start a PipelineRun of it",
        description="Create or update the Pipeline, then create a PipelineRun. With --watch, show its "
        "progress and exit 0 when it succeeds, 1 otherwise.",
    )
    submit.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    add_run_options(submit, default_parallelism=0)
    submit.add_argument("--priority", choices=["interactive", "background"], default="background")
    submit.add_argument("--timeout", type=int, metavar="SECONDS", help="fail the run after SECONDS")
    submit.add_argument(
        "--pending-timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="fail a step whose pod has not started running within SECONDS (default: the pipeline's, or 600)",
    )
    submit.add_argument("--name", help="the run's name (default: generated from the pipeline's)")
    submit.add_argument("--watch", action="store_true", help="follow the run until it finishes")
    _cluster_options(submit)
    submit.set_defaults(handler=handle_submit)

    status = subparsers.add_parser("status", help="show a PipelineRun's phase and steps")
    status.add_argument("run", metavar="RUN")
    status.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
    _cluster_options(status)
    status.set_defaults(handler=handle_status)

    logs = subparsers.add_parser("logs", help="print the logs of a run's steps (the latest attempt)")
    logs.add_argument("run", metavar="RUN")
    logs.add_argument("step", nargs="?", metavar="STEP", help="only this step")
    logs.add_argument("-f", "--follow", action="store_true", help="stream the log of a running step")
    _cluster_options(logs)
    logs.set_defaults(handler=handle_logs)

    cancel = subparsers.add_parser("cancel", help="cancel a PipelineRun (its running steps are stopped)")
    cancel.add_argument("run", metavar="RUN")
    _cluster_options(cancel)
    cancel.set_defaults(handler=handle_cancel)

    rerun = subparsers.add_parser(
        "rerun", help="run again what did not succeed in a finished run, reusing the rest"
    )
    rerun.add_argument("run", metavar="RUN")
    rerun.add_argument("--watch", action="store_true", help="follow the new run until it finishes")
    _cluster_options(rerun)
    rerun.set_defaults(handler=handle_rerun)


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="default: the kubeconfig context's namespace")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")


def _connect(args: argparse.Namespace) -> Cluster:
    from orchest_operator.remote import Cluster

    return Cluster.connect(args.namespace, args.kubeconfig)


@_cluster_command
def _positive_seconds(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number of seconds, got {text!r}")
    return int(text)


def handle_submit(args: argparse.Namespace) -> int:
    loaded = load(args.pipeline, check_files=False)
    if not loaded.ok or loaded.document is None:
        for problem in loaded.problems:
            print(f"{args.pipeline}: {problem}", file=sys.stderr)
        return 2
    document = loaded.document
    if document.spec.volume is None:
        raise CliError(
            f"{args.pipeline}: spec.volume is required on a cluster: the steps' files and shared data live "
            "on a PersistentVolumeClaim",
            2,
        )
    spec = run_request(args, document.metadata.name)
    spec["priority"] = Priority(args.priority.capitalize()).value
    if args.timeout is not None:
        spec["timeoutSeconds"] = args.timeout
    if args.pending_timeout is not None:
        spec["pendingTimeoutSeconds"] = args.pending_timeout
    try:
        Dag.of(document.spec).select(spec["selection"]["mode"], spec["selection"]["steps"])
    except PlanError as err:
        raise CliError(f"{args.pipeline}: {'; '.join(err.problems)}", 2) from None
    cluster = _connect(args)
    body = {"apiVersion": API_VERSION, "kind": "Pipeline", "metadata": {"name": document.metadata.name}}
    body["spec"] = document.spec.wire()
    meta = {"name": args.name} if args.name else {"generateName": f"{document.metadata.name}-"}
    run = {"apiVersion": API_VERSION, "kind": "PipelineRun", "metadata": meta, "spec": spec}
    cluster.apply_pipeline(body)
    created = cluster.create("pipelineruns", run)
    name = created["metadata"]["name"]
    print(f"pipelinerun {name} created in namespace {cluster.namespace}", flush=True)
    return _watch(cluster, name) if args.watch else 0


def _watch(cluster: Cluster, name: str) -> int:
    from orchest_operator.progress import reporter_for  # rich: the images do not install it

    reporter = reporter_for(sys.stdout)
    status = PipelineRunStatus()
    try:
        for status in cluster.watch_run(name):
            reporter.update(status)
    finally:
        reporter.close(status)
    condition = next((c for c in status.conditions if c.type == "Succeeded"), None)
    outcome = f"{status.phase.value}" + (f" ({condition.reason}: {condition.message})" if condition else "")
    print(f"pipelinerun {name} {outcome}")
    return 0 if status.phase is RunPhase.SUCCEEDED else 1


@_cluster_command
def handle_status(args: argparse.Namespace) -> int:
    cluster = _connect(args)
    run = cluster.get("pipelineruns", args.run)
    if args.output == "json":
        print(json.dumps(run, indent=2))
        return 0
    if args.output == "yaml":
        print(yaml.safe_dump(run, sort_keys=False), end="")
        return 0
    print(_status_text(run))
    return 0


def _status_text(run: dict[str, Any]) -> str:
    status = PipelineRunStatus.model_validate(run.get("status") or {})
    condition = next((c for c in status.conditions if c.type == "Succeeded"), None)
    lines = [
        f"Run:       {run['metadata']['name']} (pipeline {run['spec']['pipelineRef']['name']})",
        f"Phase:     {status.phase.value}"
        + (f" — {condition.reason}: {condition.message}" if condition else ""),
        f"Progress:  {status.progress or '-'}",
        f"Started:   {status.start_time or '-'}",
        f"Completed: {status.completion_time or '-'}",
    ]
    if status.steps:
        width = max(len(n) for n in status.steps)
        lines.append("")
        lines.append(f"{'STEP':<{width}}  {'PHASE':<9}  {'ATTEMPTS':<8}  MESSAGE")
        for name, step in status.steps.items():
            message = step.message or ""
            if step.reason and step.phase is StepPhase.RUNNING:  # waiting for its pod: say why
                message = f"{step.reason}: {message}" if message else step.reason
            if step.failure and step.failure.ename:
                message = (
                    f"cell {step.failure.cell}: {step.failure.ename}: {step.failure.evalue or ''}".strip()
                )
            lines.append(
                f"{name:<{width}}  {step.phase.value:<9}  {step.attempts or '-'!s:<8}  {message}".rstrip()
            )
    return "\n".join(lines)


@_cluster_command
def handle_logs(args: argparse.Namespace) -> int:
    cluster = _connect(args)
    run = cluster.get("pipelineruns", args.run)
    pods = cluster.step_pods(args.run, args.step)
    if not pods:
        which = f"step {args.step!r} of run {args.run!r}" if args.step else f"run {args.run!r}"
        raise CliError(f"no pods for {which} (yet): steps that have not started have no logs")
    latest: dict[str, Any] = {}
    for pod in pods:  # oldest first: the last one of each step is its latest attempt
        latest[pod.metadata.labels.get("orchest.io/step", "")] = pod
    order = list((run.get("status") or {}).get("snapshot", {}).get("selected") or sorted(latest))
    steps = [s for s in order if s in latest]
    if args.follow and len(steps) != 1:
        raise CliError("--follow streams one step: name it, e.g. orchest logs RUN STEP -f", 2)
    for step in steps:
        for line in cluster.logs(latest[step].metadata.name, follow=args.follow):
            print(f"[{step}] {line}" if len(steps) > 1 else line, flush=args.follow)
    return 0


@_cluster_command
def handle_cancel(args: argparse.Namespace) -> int:
    cluster = _connect(args)
    cluster.patch_run(args.run, {"spec": {"cancel": True}})
    print(f"pipelinerun {args.run} cancel requested")
    return 0


@_cluster_command
def handle_rerun(args: argparse.Namespace) -> int:
    cluster = _connect(args)
    earlier = cluster.get("pipelineruns", args.run)
    phase = RunPhase((earlier.get("status") or {}).get("phase", RunPhase.PENDING))
    if not phase.finished:
        raise CliError(f"run {args.run!r} is still {phase.value}; rerun it once it has finished")
    spec = {"pipelineRef": earlier["spec"]["pipelineRef"], "rerunOf": args.run}
    keys = (
        "parameters",
        "parallelism",
        "failurePolicy",
        "priority",
        "timeoutSeconds",
        "workspace",
        "workspaceExclude",
        "cache",
    )
    for key in keys:
        if key in earlier["spec"]:
            spec[key] = earlier["spec"][key]
    body = {
        "apiVersion": API_VERSION,
        "kind": "PipelineRun",
        "metadata": {"generateName": f"{earlier['spec']['pipelineRef']['name']}-"},
        "spec": spec,
    }
    created = cluster.create("pipelineruns", body)
    name = created["metadata"]["name"]
    print(f"pipelinerun {name} created to rerun {args.run}", flush=True)
    return _watch(cluster, name) if args.watch else 0
