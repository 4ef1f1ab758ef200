"""What a step's cache key is made of, and the first reason a step must run. Pure: no I/O.

A key hashes the step's file bytes, its merged parameters, its image, its environment, the content of its
``inputs`` and, for each step it depends on, that step's key, or the content of its ``outputs`` when it
declares them (then an upstream rerun that writes the same bytes invalidates nothing after it).

Resources are not in the key: requests and limits decide where and how fast a step runs, not what it
writes, and raising a memory limit after an out-of-memory kill must not throw away every step that
succeeded. (Bazel keeps execution requirements out of its action keys for the same reason.) A step whose
result depends on the hardware (a GPU) says so through its image or a parameter.

An upstream step that is not cached and declares no outputs has side effects nobody can see: a step that
depends on it has no key and always runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchest_operator.models import PipelineSpec, Step

VERSION = 1
"""Bump when the key's recipe changes: records of another version are foreign, hence misses."""


def digest(value: Any) -> str:
    """A short, stable digest of a JSON value (parameters and env values are kept as digests only)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Recipe:
    """A step's part of the key that the planner knows without the pipeline directory; JSON-safe, so the
    operator can hand it to the step's pod."""

    name: str
    file: str
    parameters: dict[str, str]
    """Parameter name → digest of its merged value."""
    image: str
    env: dict[str, str]
    """Variable name → digest of its value."""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    cache: bool = False

    def wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "parameters": self.parameters,
            "image": self.image,
            "env": self.env,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "dependsOn": list(self.depends_on),
            "cache": self.cache,
        }

    @classmethod
    def of_wire(cls, data: Mapping[str, Any]) -> Recipe:
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            parameters=dict(data["parameters"]),
            image=str(data["image"]),
            env=dict(data["env"]),
            inputs=tuple(data.get("inputs") or ()),
            outputs=tuple(data.get("outputs") or ()),
            depends_on=tuple(data.get("dependsOn") or ()),
            cache=bool(data.get("cache")),
        )


def recipe(
    spec: PipelineSpec, step: Step, overrides: Mapping[str, Any] | None = None, *, default_image: str = ""
) -> Recipe:
    """One step's recipe. ``default_image`` is what runs a step that names no image (the operator's step
    runner image on a cluster; nothing locally, where the step runs in this Python)."""
    parameters = spec.parameters_for(step, dict(overrides or {}))
    return Recipe(
        name=step.name,
        file=step.file,
        parameters={k: digest(v) for k, v in sorted(parameters.items())},
        image=step.image or spec.image or default_image,
        env={e.name: digest(e.value) for e in sorted(spec.env_for(step), key=lambda e: e.name)},
        inputs=tuple(step.inputs or ()),
        outputs=tuple(step.outputs or ()),
        depends_on=tuple(step.depends_on),
        cache=spec.caches(step),
    )


def recipes(
    spec: PipelineSpec, overrides: Mapping[str, Any] | None = None, *, default_image: str = ""
) -> dict[str, Recipe]:
    """Every step's recipe."""
    return {s.name: recipe(spec, s, overrides, default_image=default_image) for s in spec.steps}


def closure(recipe_of: Callable[[str], Recipe], name: str) -> dict[str, Recipe]:
    """The recipes a step's key needs: its own and, through upstream steps without declared outputs, their
    upstream's. What the operator hands to a step's pod; ``recipe_of`` makes (or looks up) one recipe."""
    needed: dict[str, Recipe] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in needed:
            continue
        found = needed[current] = recipe_of(current)
        if current == name or (found.cache and not found.outputs):
            todo.extend(found.depends_on)
    return needed


@dataclass(frozen=True)
class Ingredients:
    """Everything a step's key is made of, as found when the step was about to start."""

    file: str
    file_hash: str | None
    """The sha256 of the step file, None when it is missing."""
    parameters: dict[str, str]
    image: str
    env: dict[str, str]
    inputs: dict[str, str]
    """Input file (relative path) → sha256."""
    upstream: dict[str, str]
    """``step`` → its key, or ``step:path`` → sha256 of one of its declared outputs."""

    @property
    def key(self) -> str:
        return hashlib.sha256(
            json.dumps({"version": VERSION, **self.wire()}, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()

    def wire(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "fileHash": self.file_hash,
            "parameters": self.parameters,
            "image": self.image,
            "env": self.env,
            "inputs": self.inputs,
            "upstream": self.upstream,
        }

    @classmethod
    def of_wire(cls, data: Mapping[str, Any]) -> Ingredients:
        def strings(value: Any) -> dict[str, str]:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError("expected a map of strings")
            return dict(value)

        file_hash = data["fileHash"]
        if file_hash is not None and not isinstance(file_hash, str):
            raise ValueError("fileHash is not a string")
        return cls(
            file=str(data["file"]),
            file_hash=file_hash,
            parameters=strings(data["parameters"]),
            image=str(data["image"]),
            env=strings(data["env"]),
            inputs=strings(data["inputs"]),
            upstream=strings(data["upstream"]),
        )


@dataclass(frozen=True)
class Unkeyed:
    """A step that has no key: it always runs, for ``reason``."""

    reason: str


Probe = Callable[[str], str | None]
"""The sha256 of a file of the pipeline directory, or None when it does not exist."""
Expand = Callable[[Iterable[str]], dict[str, str]]
"""The files (relative path → sha256) that globs of the pipeline directory match now."""


@dataclass
class KeyMaker:
    """Works out keys for the steps of one run; a step's key, once made, stays what it was when the step
    was decided (``known``), while declared outputs are hashed anew every time they are asked for."""

    recipes: Mapping[str, Recipe]
    probe: Probe
    expand: Expand
    known: dict[str, Ingredients | Unkeyed] = field(default_factory=dict)

    def ingredients(self, name: str) -> Ingredients | Unkeyed:
        if name in self.known:
            return self.known[name]
        recipe = self.recipes[name]
        upstream: dict[str, str] = {}
        made: Ingredients | Unkeyed | None = None
        for dep in sorted(recipe.depends_on):
            before = self.recipes.get(dep)
            if before is None:
                made = Unkeyed(f"upstream {dep} is unknown")
                break
            if before.outputs:
                upstream.update({f"{dep}:{path}": sha for path, sha in self.expand(before.outputs).items()})
                continue
            if not before.cache:
                made = Unkeyed(f"upstream {dep} is not cached and declares no outputs")
                break
            theirs = self.ingredients(dep)
            if isinstance(theirs, Unkeyed):
                made = Unkeyed(f"upstream {dep} has no cache key ({theirs.reason})")
                break
            upstream[dep] = theirs.key
        if made is None:
            made = Ingredients(
                file=recipe.file,
                file_hash=self.probe(recipe.file),
                parameters=recipe.parameters,
                image=recipe.image,
                env=recipe.env,
                inputs=self.expand(recipe.inputs) if recipe.inputs else {},
                upstream=upstream,
            )
        self.known[name] = made
        return made


@dataclass(frozen=True)
class Record:
    """One successful execution in the index: what it was made of and what it wrote."""

    key: str
    pipeline: str
    step: str
    run: str
    created: str
    """RFC 3339, UTC."""
    ingredients: Ingredients
    outputs: dict[str, str]
    """Declared output file → sha256, as the execution left it."""

    def wire(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "key": self.key,
            "pipeline": self.pipeline,
            "step": self.step,
            "run": self.run,
            "created": self.created,
            "ingredients": self.ingredients.wire(),
            "outputs": self.outputs,
        }

    @classmethod
    def of_wire(cls, data: Any) -> Record:
        """A record read back; raises ``ValueError`` for a corrupt or foreign one (another version, or a
        key its own ingredients do not give)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != VERSION:
            raise ValueError(f"written by another version of orchest (version {data.get('version')!r})")
        try:
            ingredients = Ingredients.of_wire(data["ingredients"])
            outputs = data["outputs"]
            if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
                raise ValueError("outputs is not a map of strings")
            record = cls(
                key=str(data["key"]),
                pipeline=str(data["pipeline"]),
                step=str(data["step"]),
                run=str(data["run"]),
                created=str(data["created"]),
                ingredients=ingredients,
                outputs=dict(outputs),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"missing or mistyped field {err}") from None
        if ingredients.key != record.key:
            raise ValueError("its key does not match its ingredients")
        return record


def _changes(kind: str, old: Mapping[str, str], new: Mapping[str, str]) -> str | None:
    for name in sorted(set(old) | set(new)):
        if name not in old:
            return f"{kind} {name} added"
        if name not in new:
            return f"{kind} {name} removed" if kind != "input" else f"input {name} missing"
        if old[name] != new[name]:
            return f"{kind} {name} changed"
    return None


def own_difference(old: Ingredients, new: Ingredients) -> str | None:
    """The first of the step's own ingredients that differs, in the order a user edits them."""
    if old.file != new.file:
        return f"step file changed from {old.file} to {new.file}"
    if new.file_hash is None:
        return f"{new.file} missing"
    if old.file_hash != new.file_hash:
        return f"{new.file} changed"
    image = f"image changed from {old.image or '-'} to {new.image or '-'}" if old.image != new.image else None
    return (
        _changes("parameter", old.parameters, new.parameters)
        or image
        or _changes("env", old.env, new.env)
        or _changes("input", old.inputs, new.inputs)
    )


def upstream_difference(old: Ingredients, new: Ingredients) -> str | None:
    for name in sorted(set(old.upstream) | set(new.upstream)):
        step, _, path = name.partition(":")
        if old.upstream.get(name) == new.upstream.get(name):
            continue
        if path:
            if name not in new.upstream:
                return f"output {path} of upstream {step} missing"
            return f"output {path} of upstream {step} changed"
        return f"upstream {step} changed"
    return None


def first_difference(old: Ingredients, new: Ingredients) -> str:
    """Why ``new`` does not have ``old``'s key, in words: the first thing that differs."""
    return own_difference(old, new) or upstream_difference(old, new) or "cache key changed"


@dataclass(frozen=True)
class Verdict:
    """Run or reuse one step, and why."""

    cached: bool
    reason: str
    ingredients: Ingredients | None = None
    cached_from: str | None = None

    @property
    def key(self) -> str | None:
        return self.ingredients.key if self.ingredients is not None else None


def judge(
    made: Ingredients | Unkeyed,
    exact: Record | str | None,
    latest: Record | str | None,
    outputs_now: Mapping[str, str | None],
) -> Verdict:
    """Reuse the step only when a record has its key and every output recorded there is still on disk
    with the same content. ``exact``/``latest`` are the records of this key and of the step's latest
    execution, or a string saying why a record could not be used (corrupt, foreign). ``outputs_now`` maps
    each recorded output to its sha256 now (None when missing)."""
    if isinstance(made, Unkeyed):
        return Verdict(False, made.reason)
    if made.file_hash is None:
        return Verdict(False, f"{made.file} missing", made)
    if isinstance(exact, Record):
        for path in sorted(exact.outputs):
            now = outputs_now.get(path)
            if now is None:
                return Verdict(False, f"output {path} missing", made)
            if now != exact.outputs[path]:
                return Verdict(False, f"output {path} changed", made)
        return Verdict(True, f"same inputs as in run {exact.run}", made, cached_from=exact.run)
    if isinstance(exact, str):
        return Verdict(False, f"cache record unusable: {exact}", made)
    if isinstance(latest, Record):
        return Verdict(False, first_difference(latest.ingredients, made), made)
    if isinstance(latest, str):
        return Verdict(False, f"cache record unusable: {latest}", made)
    return Verdict(False, "no earlier execution", made)


def hit_message(cached_from: str, reason: str) -> str:
    """The termination message of a step's pod that found its execution in the cache."""
    return json.dumps({"message": reason, "cachedFrom": cached_from})


def read_hit(text: str | None) -> tuple[str, str] | None:
    """(the run reused, the message) from a succeeded pod's termination message, None when it ran."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("cachedFrom"), str):
        return None
    return data["cachedFrom"], str(data.get("message") or "")
