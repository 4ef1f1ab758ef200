"""CustomResourceDefinitions generated from the pydantic models.

The API server wants a *structural* OpenAPI v3 schema: no ``$ref``, no ``anyOf`` with ``null``, no
``additionalProperties: true``. Pydantic emits JSON Schema, so this module inlines and rewrites it.
The generated files are committed (``manifests/crds``, ``charts/orchest/crds``) and a test fails when
they drift from the models.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from orchest_operator import models

_DROP_KEYS = {"title", "discriminator"}

# Everything but ``cancel`` is frozen once a run exists: a run is a record of what was asked for.
_IMMUTABLE_RUN_FIELDS = (
    "pipelineRef",
    "selection",
    "parameters",
    "parallelism",
    "failurePolicy",
    "priority",
    "cache",
)
_OPTIONAL_IMMUTABLE_RUN_FIELDS = ("timeoutSeconds", "rerunOf", "workspace", "workspaceExclude")


def _run_spec_rules() -> list[dict[str, str]]:
    rules = [
        {"rule": f"self.{f} == oldSelf.{f}", "message": f"{f} is immutable; only cancel may change"}
        for f in _IMMUTABLE_RUN_FIELDS
    ]
    rules += [
        {
            "rule": f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
            "message": f"{f} is immutable; only cancel may change",
        }
        for f in _OPTIONAL_IMMUTABLE_RUN_FIELDS
    ]
    return rules


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value]
    return value


def structural(schema: dict[str, Any], defs: dict[str, Any], *, keep_defaults: bool = True) -> dict[str, Any]:
    """Rewrite one pydantic JSON Schema node (recursively) into a structural Kubernetes schema."""
    node = copy.deepcopy(schema)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**copy.deepcopy(target), **node}
    for key in _DROP_KEYS:
        node.pop(key, None)

    if node.get("x-kubernetes-int-or-string"):
        node.pop("anyOf", None)
        node.pop("type", None)
    elif "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != len(schema["anyOf"]):
            node["nullable"] = True
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {options} structurally")
        inner = structural(options[0], defs, keep_defaults=keep_defaults)
        node = {**inner, **node}

    if node.get("x-kubernetes-preserve-unknown-fields"):
        # A free map keeps its ``type: object``; a free value (a parameter's value) has no type at all.
        node.pop("additionalProperties", None)
    if node.get("additionalProperties") is False:
        node.pop("additionalProperties")
    if "default" in node:
        if keep_defaults and node["default"] is not None:
            node["default"] = _strip_none(node["default"])
        else:
            node.pop("default")

    if "properties" in node:
        node["properties"] = {
            name: structural(sub, defs, keep_defaults=keep_defaults)
            for name, sub in node["properties"].items()
        }
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(
            node["additionalProperties"], defs, keep_defaults=keep_defaults
        )
    if "items" in node:
        node["items"] = structural(node["items"], defs, keep_defaults=keep_defaults)
    return node


def schema_of(model: type[BaseModel], *, keep_defaults: bool = True) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs, keep_defaults=keep_defaults)


_API_VERSION_DOC = "The versioned schema of this representation of an object (orchest.io/v1alpha1)."
_KIND_DOC = "The REST resource this object represents."
_METADATA_DOC = "Standard object metadata: name, namespace, labels, annotations."


def _crd(
    *,
    kind: str,
    plural: str,
    short: str,
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{models.GROUP}", "labels": {"app.kubernetes.io/part-of": "orchest"}},
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["orchest"],
            },
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": description,
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": _API_VERSION_DOC},
                                "kind": {"type": "string", "description": _KIND_DOC},
                                "metadata": {"type": "object", "description": _METADATA_DOC},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def pipeline_crd() -> dict[str, Any]:
    return _crd(
        kind="Pipeline",
        plural="pipelines",
        short="opl",
        description="A DAG of notebooks and scripts that share one directory, with an optional interactive "
        "Jupyter session. Run it with a PipelineRun.",
        spec=schema_of(models.PipelineSpec),
        status=schema_of(models.PipelineStatus, keep_defaults=False),
        columns=[
            {"name": "Steps", "type": "integer", "jsonPath": ".status.stepCount"},
            {"name": "Session", "type": "string", "jsonPath": ".status.session.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )


def pipelinerun_crd() -> dict[str, Any]:
    spec = schema_of(models.PipelineRunSpec)
    spec["x-kubernetes-validations"] = _run_spec_rules()
    return _crd(
        kind="PipelineRun",
        plural="pipelineruns",
        short="oplr",
        description="One execution of a Pipeline, or of a selection of its steps: one Kubernetes Job per "
        "step, in DAG order, in parallel where the DAG allows.",
        spec=spec,
        status=schema_of(models.PipelineRunStatus, keep_defaults=False),
        columns=[
            {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipelineRef.name"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
            {"name": "Start", "type": "date", "jsonPath": ".status.startTime"},
            {"name": "Completion", "type": "date", "jsonPath": ".status.completionTime"},
            # The Succeeded condition's message: progress, and the steps that cannot start and why.
            {
                "name": "Message",
                "type": "string",
                "jsonPath": '.status.conditions[?(@.type=="Succeeded")].message',
            },
        ],
    )


def combinations_rule() -> str:
    """CEL for "a batch has at most MAX_COMBINATIONS combinations": the product of the matrix's list sizes
    plus the include entries. CEL has no product and no variables, so each partial product is bound by a
    one-element list's ``all`` and capped at MAX + 1, which keeps every product far from overflow."""
    cap = models.MAX_COMBINATIONS
    factor = "(size(s) > {i} ? s[{i}] : 1)"
    expr = f"p{models.MAX_MATRIX_PARAMETERS} + size(self.include) <= {cap}"
    for i in reversed(range(models.MAX_MATRIX_PARAMETERS)):
        product = f"p{i} * {factor.format(i=i)}"
        expr = f"[{product} > {cap} ? {cap + 1} : {product}].all(p{i + 1}, {expr})"
    sizes = "self.matrix.map(k, size(self.matrix[k]))"
    return f"[{sizes}].all(s, [size(s) == 0 ? 0 : 1].all(p0, {expr}))"


def _job_spec_rules() -> list[dict[str, str]]:
    return [
        {
            "rule": combinations_rule(),
            "message": f"a batch has at most {models.MAX_COMBINATIONS} combinations "
            "(the product of the matrix's value counts plus the include entries)",
        },
        {
            "rule": "!has(self.schedule) || !self.schedule.startsWith('@every ') || "
            "duration(self.schedule.substring(7)) >= duration('10s')",
            "message": "schedule: @every must be at least 10s",
        },
    ]


def pipelinejob_crd() -> dict[str, Any]:
    spec = schema_of(models.PipelineJobSpec)
    spec["x-kubernetes-validations"] = _job_spec_rules()
    return _crd(
        kind="PipelineJob",
        plural="pipelinejobs",
        short="oplj",
        description="A Pipeline run once, on a cron schedule, or on demand, over a grid of parameter values: "
        "each tick creates a batch of PipelineRuns, one per combination, each exactly once.",
        spec=spec,
        status=schema_of(models.PipelineJobStatus, keep_defaults=False),
        columns=[
            {"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipelineRef.name"},
            {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule"},
            {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend"},
            {"name": "Active", "type": "integer", "jsonPath": ".status.activeRuns"},
            {"name": "Last", "type": "string", "jsonPath": ".status.lastBatchPhase"},
            {"name": "Next", "type": "string", "jsonPath": ".status.nextScheduleTime"},
            {"name": "Last Schedule", "type": "date", "jsonPath": ".status.lastScheduleTime", "priority": 1},
        ],
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD object, in the order they are written to disk."""
    return {
        "orchest.io_pipelines.yaml": pipeline_crd(),
        "orchest.io_pipelineruns.yaml": pipelinerun_crd(),
        "orchest.io_pipelinejobs.yaml": pipelinejob_crd(),
    }


def to_yaml(obj: dict[str, Any]) -> str:
    header = "# Generated from orchest_operator.models by `orchest crds`; do not edit.\n"
    return header + yaml.safe_dump(obj, sort_keys=False, width=120)
