"""``orchest job trigger|suspend|resume|status NAME``: PipelineJobs on a cluster, through the current
kubeconfig. A trigger is an annotation the operator turns into one batch (exactly once per value), so the
CLI never creates runs itself."""

from __future__ import annotations

import argparse
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import yaml

from orchest_operator.cli.cluster import _cluster_command, _cluster_options, _connect
from orchest_operator.jobs.reconcile import ANNOTATION_TRIGGER, batch_id, current_status
from orchest_operator.models import BatchTrigger, PipelineJobSpec

PLURAL = "pipelinejobs"


def register(subparsers: argparse._SubParsersAction) -> None:
    job = subparsers.add_parser("job", help="trigger, suspend, resume or show a PipelineJob on the cluster")
    verbs = job.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, text, handler in (
        ("trigger", "run one batch of the job now (whatever its schedule or suspension)", handle_trigger),
        ("suspend", "run no tick until resumed (ticks that fall meanwhile never run)", handle_suspend),
        ("resume", "run ticks again, from the next one on (nothing starts at once)", handle_resume),
        ("status", "show the job's schedule, batches and the newest batch's runs", handle_status),
    ):
        parser = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("job", metavar="NAME")
        if verb == "status":
            parser.add_argument("-o", "--output", choices=["table", "yaml", "json"], default="table")
        _cluster_options(parser)
        parser.set_defaults(handler=handler)


@_cluster_command
def handle_trigger(args: argparse.Namespace) -> int:
    cluster = _connect(args)
    value = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    cluster.patch(PLURAL, args.job, {"metadata": {"annotations": {ANNOTATION_TRIGGER: value}}})
    batch = batch_id(BatchTrigger.MANUAL, datetime.now(UTC), value)
    print(f"pipelinejob {args.job}: batch {batch} requested (its runs are labelled orchest.io/batch={batch})")
    return 0


@_cluster_command
def handle_suspend(args: argparse.Namespace) -> int:
    _connect(args).patch(PLURAL, args.job, {"spec": {"suspend": True}})
    print(f"pipelinejob {args.job} suspended")
    return 0


@_cluster_command
def handle_resume(args: argparse.Namespace) -> int:
    _connect(args).patch(PLURAL, args.job, {"spec": {"suspend": False}})
    print(f"pipelinejob {args.job} resumed: the next tick runs, none that fell while it was suspended")
    return 0


@_cluster_command
def handle_status(args: argparse.Namespace) -> int:
    job = _connect(args).get(PLURAL, args.job)
    if args.output == "json":
        print(json.dumps(job, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(job, sort_keys=False), end="")
    else:
        print(status_text(job))
    return 0


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def status_text(job: dict[str, Any]) -> str:
    spec = PipelineJobSpec.model_validate(job.get("spec") or {})
    status = current_status(job)
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    lines = [
        f"Job:       {job['metadata']['name']} (pipeline {spec.pipeline_ref.name})",
        f"Schedule:  {spec.schedule or '(none: one batch at creation)'}"
        + (f" in {spec.time_zone}" if spec.schedule else "")
        + (" (suspended)" if spec.suspend else ""),
        f"Last tick: {status.last_schedule_time or '-'}",
        f"Next tick: {status.next_schedule_time or '-'}",
        f"Active:    {status.active_runs} run(s)"
        + (f" in {', '.join(status.active)}" if status.active else ""),
    ]
    if ready is not None:
        lines.append(f"Ready:     {ready.status.value} ({ready.reason}): {ready.message}")
    if status.missed_ticks:
        lines.append(f"Missed:    {status.missed_ticks} tick(s)")
    if status.batches:
        rows: list[tuple[str, ...]] = [("BATCH", "TRIGGER", "SCHEDULED", "PHASE", "RUNS", "COUNTS")]
        for batch in status.batches:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(batch.counts.items())) or batch.message or ""
            rows.append(
                (
                    batch.id,
                    batch.trigger.value,
                    batch.scheduled_time,
                    batch.phase.value,
                    str(batch.runs),
                    counts,
                )
            )
        lines += ["", *_table(rows)]
        newest = next((b for b in status.batches if b.combinations), None)
        if newest is not None:
            rows = [("#", "RUN", "PHASE", "DURATION")]
            for row in newest.combinations:
                seconds = "" if row.duration_seconds is None else f"{row.duration_seconds}s"
                rows.append((str(row.index), row.run, row.phase.value if row.phase else "-", seconds))
            lines += ["", f"Runs of batch {newest.id}:", *_table(rows)]
    return "\n".join(lines)
