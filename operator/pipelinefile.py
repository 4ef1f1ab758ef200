"""Read a Pipeline YAML file and find everything wrong with it, as one readable line per problem.

``orchest validate`` prints these lines, ``orchest run`` refuses to start on any of them, and ``orchest
graph`` needs a file that passes at least the schema and DAG checks. Each line names where the problem is:
a YAML position (``pipeline.yaml:3:5``) or a field path (``spec.steps[2].name``).
"""

from __future__ import annotations

import difflib
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchest_operator import dag
from orchest_operator.models import DNS1123_LABEL, ENV_NAME, QUANTITY, STEP_FILE, PipelineDocument

_PATTERNS = {
    DNS1123_LABEL: "is not a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a "
    "letter or digit)",
    STEP_FILE: "is not a relative path to a .ipynb, .py or .sh file",
    ENV_NAME: "is not an environment variable name (letters, digits, '_', '-' and '.'; no leading digit)",
    QUANTITY: "is not a Kubernetes quantity (such as 2, 500m or 1Gi)",
    r"^/": "is not an absolute path",
    r"^[^/]": "is not a relative path",
}
# Pydantic names the member of a union in the error location; the user never wrote it.
_UNION_TAGS = {"int", "str", "float", "bool", "constrained-str"}
_QUANTITY_UNION = {"int", "constrained-str"}


@dataclass
class Loaded:
    path: Path
    document: PipelineDocument | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def base(self) -> Path:
        """The pipeline's directory: where its step files live and where its steps run."""
        return self.path.parent

    @property
    def ok(self) -> bool:
        return self.document is not None and not self.problems


def load(path: Path, *, check_files: bool = True) -> Loaded:
    """Parse ``path`` and collect every problem: YAML, schema, DAG and (if asked) the step files."""
    loaded = Loaded(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        loaded.problems.append("no such file")
        return loaded
    except (OSError, UnicodeDecodeError) as err:
        loaded.problems.append(f"cannot read the file: {getattr(err, 'strerror', None) or err}")
        return loaded
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        loaded.problems.append(_yaml_problem(err))
        return loaded
    if raw is None:
        loaded.problems.append("the file is empty; expected a Pipeline with metadata and spec")
        return loaded
    if not isinstance(raw, dict):
        loaded.problems.append(f"expected a Pipeline (a mapping with metadata and spec), found {_kind(raw)}")
        return loaded
    try:
        loaded.document = PipelineDocument.model_validate(raw)
    except ValidationError as err:
        loaded.problems.extend(schema_problems(err, PipelineDocument))
        return loaded
    loaded.problems.extend(f"spec.steps: {p}" for p in dag.problems(loaded.document.spec.steps))
    if check_files:
        loaded.problems.extend(file_problems(loaded.document, loaded.base))
    return loaded


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice is an error: its first value would vanish."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return f"{where}invalid YAML: {detail}"


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string"}.get(type(value), f"a {type(value).__name__}")


def field_path(loc: Iterable[int | str]) -> str:
    """``('spec', 'steps', 2, 'name')`` → ``spec.steps[2].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(document)"


def schema_problems(err: ValidationError, model: type[BaseModel]) -> list[str]:
    """Pydantic's errors as ``field.path: what is wrong`` lines, one per field."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    tags: dict[str, set[str]] = {}
    for error in err.errors():
        loc = list(error["loc"])
        stripped = set()
        while loc and isinstance(loc[-1], str) and loc[-1] in _UNION_TAGS:
            stripped.add(loc.pop())
        path = field_path(loc)
        by_path.setdefault(path, []).append(error)
        tags.setdefault(path, set()).update(stripped)
    fields = _aliases(model)
    return [f"{path}: {_describe(errors, tags[path], fields)}" for path, errors in by_path.items()]


def _describe(errors: list[dict[str, Any]], tags: set[str], fields: set[str]) -> str:
    first = errors[0]
    kind, value = first["type"], first.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        name = str(first["loc"][-1])
        guess = {f.lower(): f for f in fields}
        lowered = name.lower()
        close = difflib.get_close_matches(lowered, list(guess), n=1, cutoff=0.7) or sorted(
            f for f in guess if len(lowered) >= 4 and (f.startswith(lowered) or lowered.startswith(f))
        )
        hint = f" (did you mean {guess[close[0]]!r}?)" if close else ""
        return f"unknown field {name!r}{hint}"
    if tags == _QUANTITY_UNION:
        return f"{value!r} {_PATTERNS[QUANTITY]}"
    pattern = first.get("ctx", {}).get("pattern")
    if kind == "string_pattern_mismatch":
        return f"{value!r} {_PATTERNS.get(pattern) or f'does not match {pattern}'}"
    message = "; or ".join(dict.fromkeys(e["msg"] for e in errors))
    if message.startswith("Input should"):
        message = message.removeprefix("Input ")
        return f"{value!r} {message}" if isinstance(value, str | int | float | bool) else message
    return message


def _aliases(model: type[BaseModel]) -> set[str]:
    """Every field name (as written in YAML) reachable from ``model``: candidates for a typo hint."""
    names: set[str] = set()
    todo: list[type[BaseModel]] = [model]
    seen: set[type[BaseModel]] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, info in current.model_fields.items():
            names.add(info.alias or name)
            todo.extend(_models_in(info.annotation))
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def file_problems(document: PipelineDocument, base: Path) -> list[str]:
    """Step files must exist beside the pipeline, inside its directory (the only directory a cluster run
    mounts), and a notebook must be a valid notebook."""
    found: list[str] = []
    root = base.resolve()
    for index, step in enumerate(document.spec.steps):
        where = f"spec.steps[{index}].file"
        target = base / step.file
        if not target.resolve().is_relative_to(root):
            found.append(f"{where}: {step.file!r} lies outside the pipeline's directory {base}")
        elif not target.exists():
            found.append(f"{where}: {step.file!r} does not exist in {base}")
        elif not target.is_file():
            found.append(f"{where}: {step.file!r} is not a file")
        elif target.suffix == ".ipynb":
            problem = notebook_problem(target)
            if problem:
                found.append(f"{where}: {step.file!r} is not a valid notebook: {problem}")
    return found


def notebook_problem(path: Path) -> str | None:
    """Why ``path`` is not a valid Jupyter notebook, or None."""
    import nbformat

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot read it: {getattr(err, 'strerror', None) or err}"
    except ValueError as err:
        return f"not JSON ({err})"
    if not isinstance(data, dict) or "nbformat" not in data:
        return "no nbformat version"
    try:
        with warnings.catch_warnings():
            # Cells without ids are still valid nbformat 4; nbformat only warns about the future.
            warnings.simplefilter("ignore")
            nbformat.validate(data)
    except nbformat.ValidationError as err:
        where = list(getattr(err, "absolute_path", ()))
        text = (getattr(err, "message", None) or str(err)).splitlines()[0]
        return f"{field_path(where)}: {text}" if where else text
    except Exception as err:  # an unknown nbformat version and the like
        return str(err).splitlines()[0]
    return None
