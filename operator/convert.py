"""Turn an Orchest pipeline definition (the ``.orchest`` JSON its editor saved) into a Pipeline YAML.

Orchest keyed steps by uuid and named them with free-form titles; a Pipeline names steps with DNS-1123
labels and lists dependencies by name. Orchest environments were images Orchest built itself, so their
uuids survive only as a comment telling the user which steps need an ``image``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError

from orchest_operator import dag
from orchest_operator.models import PipelineDocument
from orchest_operator.pipelinefile import schema_problems

MAX_STEP_NAME = 40
MAX_PIPELINE_NAME = 63
_RUNNABLE = (".ipynb", ".py", ".sh")


class ConvertError(ValueError):
    """The Orchest file cannot be converted; ``problems`` has one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def dns_label(text: str, limit: int, fallback: str) -> str:
    """Lowercase, runs of anything else than letters and digits become '-', cut to ``limit``."""
    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return label or fallback


def unique(name: str, taken: set[str], limit: int) -> str:
    """``name``, or ``name-2``, ``name-3``… (cut to fit ``limit``) when it is taken."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = name[: limit - len(suffix)].rstrip("-") + suffix
    taken.add(candidate)
    return candidate


def convert(data: Any, source: str) -> str:
    """The Pipeline YAML text for the parsed Orchest JSON ``data``; ``source`` names it in the header."""
    document, header = pipeline_document(data, source)
    return header + render(document)


def render(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def pipeline_document(data: Any, source: str) -> tuple[dict[str, Any], str]:
    """The Pipeline (steps in dependency order) for the parsed Orchest JSON ``data``, and the header of
    comments about what did not convert; raises ``ConvertError``."""
    if not isinstance(data, dict):
        raise ConvertError(["expected an Orchest pipeline (a JSON object with name and steps)"])
    steps = data.get("steps")
    if not isinstance(steps, dict) or not steps:
        raise ConvertError(["steps: expected an object of steps keyed by uuid"])
    problems = [
        f"steps.{uuid}: expected an object" for uuid, step in steps.items() if not isinstance(step, dict)
    ]
    names = step_names(data)

    converted: list[dict[str, Any]] = []
    environments: dict[str, list[str]] = {}
    for uuid, name in names.items():
        step = steps[uuid]
        where = f"steps.{uuid} ({step.get('title') or name!s})"
        file = step.get("file_path")
        if not isinstance(file, str) or not file:
            problems.append(f"{where}: file_path is missing")
            continue
        if not file.endswith(_RUNNABLE):
            problems.append(f"{where}: {file!r} cannot be run: steps are .ipynb, .py or .sh files")
            continue
        entry: dict[str, Any] = {"name": name, "file": file}
        incoming = step.get("incoming_connections") or []
        unknown = [u for u in incoming if u not in names]
        if unknown:
            problems.extend(f"{where}: incoming connection from unknown step {u!r}" for u in unknown)
            continue
        if incoming:
            entry["dependsOn"] = [names[u] for u in incoming]
        if step.get("parameters"):
            entry["parameters"] = step["parameters"]
        if step.get("environment"):
            environments.setdefault(str(step["environment"]), []).append(name)
        converted.append(entry)
    if problems:
        raise ConvertError(problems)

    pipeline_name = dns_label(str(data.get("name") or source), MAX_PIPELINE_NAME, "pipeline")
    document = {
        "apiVersion": "orchest.io/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": pipeline_name},
        "spec": {"parameters": data.get("parameters") or {}, "steps": converted},
    }
    if not document["spec"]["parameters"]:
        del document["spec"]["parameters"]
    try:
        parsed = PipelineDocument.model_validate(document)
    except ValidationError as err:
        raise ConvertError(schema_problems(err, PipelineDocument)) from None
    found = dag.problems(parsed.spec.steps)
    if found:
        raise ConvertError(found)
    order = {name: i for i, name in enumerate(dag.Dag.of(parsed.spec).order)}
    converted.sort(key=lambda entry: order[entry["name"]])
    return document, _header(source, environments, data.get("services"))


def step_names(data: dict[str, Any]) -> dict[str, str]:
    """Orchest step uuid → the step's name in the converted Pipeline (as :func:`pipeline_document` names
    them)."""
    taken: set[str] = set()
    names = {}
    for uuid, step in (data.get("steps") or {}).items():
        if isinstance(step, dict):
            title = str(step.get("title") or PurePosixPath(str(step.get("file_path") or "")).stem)
            names[uuid] = unique(dns_label(title, MAX_STEP_NAME, "step"), taken, MAX_STEP_NAME)
    return names


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as people write Kubernetes YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _header(source: str, environments: Mapping[str, list[str]], services: Any) -> str:
    lines = [f"# Converted from {source} by `orchest convert`."]
    if environments:
        lines.append("# Orchest environments (images Orchest built); give these steps an `image:` built from")
        lines.append("# the same environment, or set spec.image for all of them:")
        lines += [f"#   environment {uuid}: {', '.join(steps)}" for uuid, steps in environments.items()]
    if isinstance(services, dict) and services:
        lines.append(f"# Orchest services are not converted: {', '.join(map(str, services))}")
    return "\n".join(lines) + "\n"
