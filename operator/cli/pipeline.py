"""``orchest run``, ``validate``, ``graph`` and ``convert``: working with a pipeline file, no cluster needed.

Problems with the input are printed one per line on stderr as ``FILE: where: what``; ``run`` exits 2 on
them, the other commands 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchest_operator import graph
from orchest_operator.cli import CliError
from orchest_operator.convert import ConvertError, convert
from orchest_operator.dag import PlanError
from orchest_operator.jobs import sweep
from orchest_operator.jobs.convert import convert_job, is_job
from orchest_operator.local import LocalRun, exit_code
from orchest_operator.models import FailurePolicy, PipelineDocument, PipelineRunSpec, RunPhase, SelectionMode
from orchest_operator.pipelinefile import Loaded, load, schema_problems

MODES = {mode.value.lower(): mode for mode in SelectionMode}
POLICIES = {"fail-fast": FailurePolicy.FAIL_FAST, "continue": FailurePolicy.CONTINUE}


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a pipeline on this machine",
        description="Run a pipeline locally: each step is a process in the pipeline file's directory; "
        "notebooks run through papermill. Results go to .orchest/runs/RUN-ID/ beside the pipeline file. "
        "Exit code 0 when every selected step succeeded, 1 when one failed, 2 on invalid input, "
        "130 when interrupted.",
    )
    run.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    add_run_options(run, default_parallelism=os.cpu_count() or 1)
    run.add_argument(
        "--matrix",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="sweep: one run per combination of every --matrix (at most 256), each in its own copy of the "
        "pipeline's directory; values are read as YAML",
    )
    run.add_argument(
        "--max-parallel-runs",
        type=_non_negative,
        default=os.cpu_count() or 1,
        metavar="N",
        help=f"sweep runs at once, 0 for no limit (default: {os.cpu_count() or 1})",
    )
    run.set_defaults(handler=handle_run)

    validate = subparsers.add_parser(
        "validate",
        help="check a pipeline file and list every problem",
        description="Exit code 0 when the pipeline is valid, 1 with every problem listed otherwise.",
    )
    validate.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    validate.set_defaults(handler=handle_validate)

    draw = subparsers.add_parser("graph", help="draw a pipeline's DAG (Mermaid, Graphviz dot, SVG, PNG)")
    draw.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    draw.add_argument("--format", choices=[*graph.TEXT_FORMATS, *graph.IMAGE_FORMATS], default="mermaid")
    draw.add_argument("--run", type=Path, metavar="RUN_JSON", help="colour steps by their phase in this run")
    draw.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    draw.set_defaults(handler=handle_graph)

    conv = subparsers.add_parser(
        "convert",
        help="turn an Orchest pipeline (.orchest) into a Pipeline, or an Orchest job (its JSON) into a "
        "Pipeline and a PipelineJob",
    )
    conv.add_argument("source", type=Path, metavar="FILE.orchest|JOB.json")
    conv.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here instead of stdout")
    conv.set_defaults(handler=handle_convert)


def add_run_options(parser: argparse.ArgumentParser, *, default_parallelism: int) -> None:
    """The options that shape a run, shared by ``orchest run`` and ``orchest submit``."""
    parser.add_argument("--steps", type=_names, default=[], metavar="A,B", help="the steps to select")
    parser.add_argument(
        "--mode",
        choices=list(MODES),
        help="all; selected: exactly --steps; incoming: --steps and everything they need; downstream: "
        "--steps and everything that needs them (default: selected with --steps, all without)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter in every step; VALUE is read as YAML (0.7 is a number, true a boolean)",
    )
    parser.add_argument(
        "--parallelism",
        type=_non_negative,
        default=default_parallelism,
        metavar="N",
        help=f"steps running at once, 0 for no limit (default: {default_parallelism or 'no limit'})",
    )
    parser.add_argument("--failure-policy", choices=list(POLICIES), default="fail-fast")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="run every selected step even where the cache could reuse one (executions are still recorded)",
    )


def run_request(args: argparse.Namespace, pipeline: str) -> dict[str, Any]:
    """The ``PipelineRun.spec`` the run options ask for; raises ``CliError`` (exit 2) on bad options."""
    try:
        parameters = parse_parameters(args.parameters)
    except ValueError as err:
        raise CliError(str(err), 2) from None
    mode = MODES[args.mode] if args.mode else SelectionMode.SELECTED if args.steps else SelectionMode.ALL
    if mode is SelectionMode.ALL and args.steps:
        raise CliError("--steps selects steps; it cannot be combined with --mode all", 2)
    return {
        "pipelineRef": {"name": pipeline},
        "selection": {"mode": mode.value, "steps": args.steps},
        "parameters": parameters,
        "parallelism": args.parallelism,
        "failurePolicy": POLICIES[args.failure_policy].value,
        "cache": not args.no_cache,
    }


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected step names separated by commas")
    return names


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return value


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """``-p key=value`` pairs; each value is a YAML scalar so that numbers and booleans keep their type."""
    parameters: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"-p {item!r}: expected KEY=VALUE")
        try:
            parameters[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(f"-p {item!r}: the value is not valid YAML ({problem})") from None
    return parameters


def _report(path: Path, problems: Iterable[str]) -> None:
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)


def _loaded(path: Path, *, check_files: bool = True) -> tuple[Loaded, PipelineDocument | None]:
    """The pipeline file and its document, or None after printing its problems."""
    loaded = load(path, check_files=check_files)
    if not loaded.ok:
        _report(path, loaded.problems)
        return loaded, None
    return loaded, loaded.document


def parse_matrix(items: Iterable[str]) -> dict[str, list[Any]]:
    """``--matrix key=v1,v2`` options; each value a YAML scalar, as with ``-p``."""
    matrix: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--matrix {item!r}: expected KEY=V1,V2,...")
        if key in matrix:
            raise ValueError(f"--matrix {key!r} is given twice; list all its values in one --matrix")
        values = []
        for part in text.split(","):
            try:
                values.append(yaml.safe_load(part) if part.strip() else "")
            except yaml.YAMLError:
                raise ValueError(f"--matrix {item!r}: {part!r} is not valid YAML") from None
        matrix[key] = values
    return matrix


def handle_run(args: argparse.Namespace) -> int:
    # Imported here: rich is for terminals, and the operator and step-runner images do not install it.
    try:
        from orchest_operator.progress import reporter_for, summary
    except ModuleNotFoundError as err:
        raise CliError(
            f"orchest run needs the {err.name} package, which this installation lacks "
            f"(pip install {err.name}, or pip install orchest-operator for the whole CLI)"
        ) from None

    loaded, document = _loaded(args.pipeline)
    if document is None:
        return 2
    try:
        request = PipelineRunSpec.model_validate(run_request(args, document.metadata.name))
        if args.matrix:
            return _sweep(args, document, loaded.base, request)
        local = LocalRun(document.spec, loaded.base, request)
    except ValidationError as err:
        _report(args.pipeline, schema_problems(err, PipelineRunSpec))
        return 2
    except PlanError as err:
        _report(args.pipeline, err.problems)
        return 2
    limit = "no limit" if request.parallelism == 0 else f"at most {request.parallelism} at once"
    print(
        f"Run {local.id}: {len(local.selected)} step(s) of {document.metadata.name} "
        f"({limit}, {request.failure_policy.value})",
        flush=True,
    )
    status = local.execute(reporter_for(sys.stdout))
    for line in summary(status, local.id, local.dir):
        print(line)
    return exit_code(status)


def _sweep(args: argparse.Namespace, document: PipelineDocument, base: Path, request: PipelineRunSpec) -> int:
    try:
        runs = sweep.plan(document.spec, base, request, parse_matrix(args.matrix))
    except (ValueError, sweep.SweepError) as err:
        raise CliError(str(err), 2) from None
    limit = "no limit" if args.max_parallel_runs == 0 else f"at most {args.max_parallel_runs} at once"
    print(
        f"Sweep of {document.metadata.name}: {len(runs)} run(s) ({limit}), each in its own workspace",
        flush=True,
    )

    def finished(item: sweep.SweepRun) -> None:
        seconds = item.seconds or 0.0
        print(
            f"  {item.run.id} ({_combination(item.combination)}): {item.phase.value} in {seconds:.1f}s",
            flush=True,
        )

    completed = sweep.execute(runs, args.max_parallel_runs, finished)
    for line in sweep_table(runs):
        print(line)
    if not completed:
        return 130
    return 0 if sweep.all_succeeded(runs) else 1


def _combination(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()) or "-"


def sweep_table(runs: list[sweep.SweepRun]) -> list[str]:
    """The table a sweep ends with: each combination, its run, its phase and its duration."""
    rows = [("#", "COMBINATION", "RUN", "PHASE", "DURATION")]
    for item in runs:
        seconds = item.seconds
        rows.append(
            (
                str(item.index),
                _combination(item.combination),
                item.run.id,
                item.phase.value if item.status is not None else "NotStarted",
                "" if seconds is None else f"{seconds:.1f}s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    succeeded = sum(1 for r in runs if r.phase is RunPhase.SUCCEEDED)
    lines.append(f"{succeeded}/{len(runs)} run(s) succeeded; records in .orchest/runs/<run>/")
    return lines


def handle_validate(args: argparse.Namespace) -> int:
    _, document = _loaded(args.pipeline)
    if document is None:
        return 1
    count = len(document.spec.steps)
    print(f"{args.pipeline}: valid pipeline {document.metadata.name!r} with {count} step(s)")
    return 0


def handle_graph(args: argparse.Namespace) -> int:
    _, document = _loaded(args.pipeline, check_files=False)
    if document is None:
        return 1
    try:
        phases = graph.run_phases(args.run) if args.run else None
        if args.format == "mermaid":
            output: str | bytes = graph.mermaid(document.spec, phases)
        else:
            output = graph.dot(document.spec, phases, title=document.metadata.name)
            if args.format in graph.IMAGE_FORMATS:
                output = graph.render(output, args.format)
    except graph.GraphError as err:
        raise CliError(str(err)) from None
    _write(output, args.output)
    return 0


def handle_convert(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"{args.source}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"{args.source}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
    except ValueError as err:
        raise CliError(f"{args.source}: not valid JSON: {err}") from None
    try:
        text = convert_job(data, args.source.name) if is_job(data) else convert(data, args.source.name)
    except ConvertError as err:
        _report(args.source, err.problems)
        return 1
    _write(text, args.output)
    return 0


def _write(output: str | bytes, target: Path | None) -> None:
    if target is None:
        if isinstance(output, bytes):
            if sys.stdout.isatty():
                raise CliError("refusing to write an image to a terminal: use -o FILE")
            sys.stdout.flush()
            sys.stdout.buffer.write(output)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(output)
        return
    try:
        if isinstance(output, bytes):
            target.write_bytes(output)
        else:
            target.write_text(output, encoding="utf-8")
    except OSError as err:
        raise CliError(f"cannot write {target}: {err.strerror or err}") from None
