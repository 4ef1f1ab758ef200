"""Turn an Orchest job definition (as Orchest's API returned it: ``GET /api/jobs/<uuid>``) into a Pipeline
and a PipelineJob.

An Orchest job carried its pipeline (``pipeline_definition``), a cron ``schedule`` (UTC), its parameter
grid (``strategy_json``: for the pipeline and each step, every parameter's values as a JSON list) and the
runs that grid gave (``parameters``: one object per run, keyed by ``pipeline_parameters`` and step uuids,
where the user could have left some combinations out). Orchest scoped a parameter to a step; a
PipelineJob's parameters reach every step (a step reads only those it declares), so a parameter that two
places give different values cannot be converted and is reported.

The grid becomes ``matrix`` when the runs are its full cartesian product, and ``include`` (the runs one by
one) when they are not. Job environment variables, which a PipelineJob does not carry, are listed in the
header; a ``PAUSED`` job becomes ``suspend: true``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from orchest_operator.convert import (
    MAX_PIPELINE_NAME,
    ConvertError,
    dns_label,
    pipeline_document,
    render,
    step_names,
)
from orchest_operator.jobs.schedule import Schedule, ScheduleError
from orchest_operator.models import MAX_COMBINATIONS, JobDocument
from orchest_operator.pipelinefile import schema_problems

PIPELINE_KEY = "pipeline_parameters"


def is_job(data: Any) -> bool:
    """Whether parsed JSON is an Orchest job definition rather than a pipeline."""
    return isinstance(data, dict) and isinstance(data.get("pipeline_definition"), dict)


def _where(key: str, names: dict[str, str]) -> str:
    return "the pipeline" if key == PIPELINE_KEY else f"step {names.get(key, key)}"


def _merge(
    sources: dict[str, dict[str, Any]],
    names: dict[str, str],
    problems: list[str],
    what: str,
    seen_at: dict[str, str],
) -> dict[str, Any]:
    """One flat parameter map from Orchest's per-pipeline and per-step maps; a name two places give
    different values is a problem. ``seen_at`` learns where each name came from."""
    merged: dict[str, Any] = {}
    for key, params in sources.items():
        if not isinstance(params, dict):
            problems.append(f"{what}.{key}: expected an object of parameters")
            continue
        for name, value in params.items():
            if name in merged and merged[name] != value:
                problems.append(
                    f"{what}: parameter {name!r} is {merged[name]!r} in {_where(seen_at[name], names)} and "
                    f"{value!r} in {_where(key, names)}; a PipelineJob's parameters reach every step, so "
                    "rename one of them first"
                )
                continue
            merged[name] = value
            seen_at.setdefault(name, key)
    return merged


def _defaults(pipeline_def: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the converted Pipeline already gives each step: the job needs only what differs."""
    found = {PIPELINE_KEY: pipeline_def.get("parameters") or {}}
    for uuid, step in (pipeline_def.get("steps") or {}).items():
        if isinstance(step, dict):
            found[uuid] = step.get("parameters") or {}
    return found


def _changed(key: str, params: Any, defaults: dict[str, dict[str, Any]]) -> Any:
    if not isinstance(params, dict):
        return params
    own = defaults.get(key, {})
    return {n: v for n, v in params.items() if n not in own or own[n] != v}


def _grid(
    strategy: Any,
    names: dict[str, str],
    defaults: dict[str, dict[str, Any]],
    problems: list[str],
    seen_at: dict[str, str],
) -> dict[str, list[Any]]:
    """``strategy_json`` → parameter name → its values (leaving out what the Pipeline already says)."""
    if not isinstance(strategy, dict):
        return {}
    sources: dict[str, dict[str, Any]] = {}
    for key, entry in strategy.items():
        params = entry.get("parameters") if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            problems.append(f"strategy_json.{key}: expected an object with parameters")
            continue
        values: dict[str, Any] = {}
        for name, text in params.items():
            try:
                parsed = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                problems.append(f"strategy_json.{key}.{name}: {text!r} is not a JSON list of values")
                continue
            values[name] = parsed if isinstance(parsed, list) and parsed else [parsed]
        own = defaults.get(key, {})
        sources[key] = {n: v for n, v in values.items() if not (n in own and v == [own[n]])}
    return _merge(sources, names, problems, "strategy_json", seen_at)


def convert_job(data: dict[str, Any], source: str) -> str:
    """The YAML stream (a Pipeline, then a PipelineJob) for the parsed Orchest job ``data``."""
    pipeline_def = data["pipeline_definition"]
    pipeline, header = pipeline_document(pipeline_def, source)
    names = step_names(pipeline_def)
    problems: list[str] = []
    defaults = _defaults(pipeline_def)
    origin: dict[str, str] = {}
    grid = _grid(data.get("strategy_json"), names, defaults, problems, origin)
    runs_raw = data.get("parameters")
    runs: list[dict[str, Any]] = []
    if isinstance(runs_raw, list):
        for index, run in enumerate(runs_raw):
            if isinstance(run, dict):
                changed = {key: _changed(key, params, defaults) for key, params in run.items()}
                runs.append(_merge(changed, names, problems, f"parameters[{index}]", origin))
            else:
                problems.append(f"parameters[{index}]: expected an object")
    for name, key in origin.items():
        others = [k for k, declared in defaults.items() if k != key and name in declared]
        if others:
            problems.append(
                f"parameter {name!r}: the job sets it for {_where(key, names)}, but "
                f"{', '.join(_where(k, names) for k in others)} also declares it; a PipelineJob's "
                "parameters reach every step, so rename one of them first"
            )
    if problems:
        raise ConvertError(problems)

    varying = {name: values for name, values in grid.items() if len(values) > 1}
    fixed = {name: values[0] for name, values in grid.items() if len(values) == 1}
    product = math.prod(len(v) for v in varying.values()) if varying else 1
    spec: dict[str, Any] = {"pipelineRef": {"name": pipeline["metadata"]["name"]}}
    if runs and (len(runs) != product or not varying):
        # Some combinations were left out in Orchest (or there is no grid): each run as it was.
        common = {k: v for k, v in runs[0].items() if all(r.get(k) == v for r in runs)}
        if common:
            spec["parameters"] = common
        if len(runs) > 1:
            # A run that kept the Pipeline's own value of a varying parameter says so explicitly.
            shown = {k for r in runs for k in r if k not in common}
            spec["include"] = [
                {k: r[k] if k in r else defaults[origin[k]][k] for k in sorted(shown)} for r in runs
            ]
    else:
        if fixed:
            spec["parameters"] = fixed
        if varying:
            spec["matrix"] = varying
    count = len(spec.get("include") or []) or product
    if count > MAX_COMBINATIONS:
        raise ConvertError(
            [f"the job runs {count} combinations; a PipelineJob runs at most {MAX_COMBINATIONS}"]
        )

    schedule = data.get("schedule") or data.get("cron_schedule")
    if schedule:
        try:
            Schedule.parse(str(schedule))
        except ScheduleError as err:
            raise ConvertError([f"schedule: {err.message}"]) from None
        spec["schedule"] = str(schedule)
        spec["timeZone"] = "UTC"
        # Orchest queued a tick behind a running one: the closest policy is to skip it.
        spec["concurrencyPolicy"] = "Forbid"
    if data.get("status") == "PAUSED":
        spec["suspend"] = True
    retained = data.get("max_retained_pipeline_runs")
    if isinstance(retained, int) and retained >= 0:
        spec["batchHistoryLimit"] = min(100, max(1, math.ceil(retained / max(count, 1))))

    job_name = dns_label(
        str(data.get("name") or f"{pipeline['metadata']['name']}-job"), MAX_PIPELINE_NAME, "job"
    )
    document = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "PipelineJob",
        "metadata": {"name": job_name},
        "spec": spec,
    }
    try:
        JobDocument.model_validate(document)
    except ValidationError as err:
        raise ConvertError(schema_problems(err, JobDocument)) from None
    notes = [f"# The Orchest job {data.get('name') or job_name!r} becomes PipelineJob {job_name}."]
    env = data.get("env_variables")
    if isinstance(env, dict) and env:
        notes.append(
            "# Its environment variables are not converted (add them to the Pipeline's env): "
            + ", ".join(env)
        )
    if isinstance(retained, int) and retained >= 0:
        notes.append(
            f"# max_retained_pipeline_runs {retained} became batchHistoryLimit (batches of {count} run(s))."
        )
    return header + "\n".join(notes) + "\n" + render(pipeline) + "---\n" + render(document)
