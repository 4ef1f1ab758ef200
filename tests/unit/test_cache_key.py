"""The cache key: every ingredient changed alone changes the key (and says so), resources do not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from orchest_operator.cache.key import (
    Ingredients,
    KeyMaker,
    Record,
    Unkeyed,
    closure,
    first_difference,
    hit_message,
    judge,
    read_hit,
    recipes,
)
from orchest_operator.models import PipelineSpec


def spec(**changes: Any) -> PipelineSpec:
    """load → train → report; ``changes`` are merged into the step named by their key prefix."""
    steps: dict[str, dict[str, Any]] = {
        "load": {"name": "load", "file": "load.py", "inputs": ["raw/*.csv"]},
        "train": {"name": "train", "file": "train.ipynb", "dependsOn": ["load"], "parameters": {"alpha": 1}},
        "report": {"name": "report", "file": "report.sh", "dependsOn": ["train"]},
    }
    pipeline: dict[str, Any] = {"cache": True, "image": "img:1", "env": [{"name": "MODE", "value": "a"}]}
    for name, value in changes.items():
        where, _, field = name.partition("__")
        if field:
            steps[where][field] = value
        else:
            pipeline[where] = value
    return PipelineSpec.model_validate({**pipeline, "steps": list(steps.values())})


FILES = {"load.py": "l1", "train.ipynb": "t1", "report.sh": "r1", "raw/a.csv": "a1", "data/x.csv": "x1"}


def maker(pipeline: PipelineSpec, files: dict[str, str] | None = None, **overrides: Any) -> KeyMaker:
    files = FILES if files is None else files

    def expand(globs: Iterable[str]) -> dict[str, str]:
        import fnmatch

        return {p: h for p, h in sorted(files.items()) if any(fnmatch.fnmatch(p, g) for g in globs)}

    return KeyMaker(recipes=recipes(pipeline, overrides), probe=files.get, expand=expand)


def made(pipeline: PipelineSpec, step: str = "report", files: dict[str, str] | None = None, **kw: Any):
    found = maker(pipeline, files, **kw).ingredients(step)
    assert isinstance(found, Ingredients)
    return found


BASE = made(spec())


@pytest.mark.parametrize(
    ("pipeline", "files", "overrides", "reason"),
    [
        (spec(), {**FILES, "report.sh": "r2"}, {}, "report.sh changed"),
        (spec(report__file="other.sh"), {**FILES, "other.sh": "r1"}, {}, "step file changed"),
        (spec(), None, {"alpha": 2}, "parameter alpha added"),
        (spec(report__parameters={"alpha": 1}), None, {"alpha": 2}, "parameter alpha added"),
        (spec(train__parameters={"alpha": 2}), None, {}, "upstream train changed"),
        (spec(parameters={"beta": 1}), None, {}, "parameter beta added"),
        (spec(report__image="img:2"), None, {}, "image changed from img:1 to img:2"),
        (spec(image="img:2"), None, {}, "image changed"),
        (spec(env=[{"name": "MODE", "value": "b"}]), None, {}, "env MODE changed"),
        (spec(report__env=[{"name": "EXTRA", "value": "1"}]), None, {}, "env EXTRA added"),
        (spec(report__inputs=["raw/*.csv"]), None, {}, "input raw/a.csv added"),
        (spec(), {**FILES, "train.ipynb": "t2"}, {}, "upstream train changed"),
        (spec(), {**FILES, "raw/a.csv": "a2"}, {}, "upstream train changed"),
        (spec(), {**FILES, "load.py": "l2"}, {}, "upstream train changed"),
    ],
)
def test_each_ingredient_alone_changes_the_key(
    pipeline: PipelineSpec, files: dict[str, str] | None, overrides: dict[str, Any], reason: str
) -> None:
    new = made(pipeline, files=files or FILES, **overrides)
    assert new.key != BASE.key
    assert first_difference(BASE, new).startswith(reason)


def test_a_parameter_reaches_only_the_steps_that_get_it() -> None:
    pipeline = spec(train__parameters={"alpha": 1, "beta": 2})
    before = maker(pipeline)
    after = maker(spec(train__parameters={"alpha": 1, "beta": 3}))
    assert before.ingredients("load") == after.ingredients("load")
    old, new = before.ingredients("train"), after.ingredients("train")
    assert isinstance(old, Ingredients) and isinstance(new, Ingredients)
    assert first_difference(old, new) == "parameter beta changed"


def test_resources_are_not_in_the_key() -> None:
    bigger = spec(resources={"limits": {"memory": "8Gi"}}, report__resources={"requests": {"cpu": 2}})
    assert made(bigger).key == BASE.key


def test_the_key_is_stable_and_ignores_declaration_order() -> None:
    shuffled = spec(env=[{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    ordered = spec(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    assert made(shuffled).key == made(ordered).key == made(ordered).key


def test_declared_outputs_replace_the_upstream_key() -> None:
    pipeline = spec(train__outputs=["data/*.csv"])
    first = made(pipeline)
    assert first.upstream == {"train:data/x.csv": "x1"}
    # train itself changed, but wrote the same bytes: report keeps its key.
    assert made(pipeline, files={**FILES, "train.ipynb": "t2"}).key == first.key
    changed = made(pipeline, files={**FILES, "data/x.csv": "x2"})
    assert first_difference(first, changed) == "output data/x.csv of upstream train changed"


def test_an_uncached_upstream_without_outputs_leaves_no_key() -> None:
    found = maker(spec(train__cache=False)).ingredients("report")
    assert isinstance(found, Unkeyed) and "train is not cached" in found.reason
    assert isinstance(maker(spec(load__cache=False)).ingredients("report"), Unkeyed)
    fenced = spec(load__cache=False, train__outputs=["data/*"])
    assert isinstance(maker(fenced).ingredients("report"), Ingredients)


def test_closure_stops_at_declared_outputs() -> None:
    fenced = recipes(spec(train__outputs=["data/*"]))
    assert set(closure(fenced.__getitem__, "report")) == {"report", "train"}
    assert set(closure(recipes(spec()).__getitem__, "report")) == {"report", "train", "load"}


def record(ingredients: Ingredients, outputs: dict[str, str] | None = None, run: str = "r1") -> Record:
    return Record(ingredients.key, "p", "report", run, "2026-01-01T00:00:00Z", ingredients, outputs or {})


def test_a_hit_survives_the_termination_message() -> None:
    verdict = judge(BASE, record(BASE), None, {})
    assert verdict.cached_from == "r1"
    assert read_hit(hit_message(verdict.cached_from, verdict.reason)) == ("r1", verdict.reason)
    assert read_hit('{"message": "failed", "cell": 2}') is None
    assert read_hit("Traceback (most recent call last)") is None
    assert read_hit(None) is None


def test_judge_reuses_a_record_whose_outputs_are_intact() -> None:
    verdict = judge(BASE, record(BASE, {"out.txt": "o1"}), None, {"out.txt": "o1"})
    assert verdict.cached and verdict.cached_from == "r1"
    earlier = record(BASE, {"out.txt": "o1"})
    assert judge(BASE, earlier, None, {"out.txt": None}).reason == "output out.txt missing"
    assert judge(BASE, earlier, None, {"out.txt": "o2"}).reason == "output out.txt changed"


def test_judge_explains_a_miss_against_the_latest_execution() -> None:
    changed = made(spec(), files={**FILES, "report.sh": "r2"})
    assert judge(changed, None, record(BASE), {}).reason == "report.sh changed"
    assert judge(changed, None, None, {}).reason == "no earlier execution"
    assert judge(changed, "x.json: not a JSON object", None, {}).reason.startswith("cache record unusable")


def test_a_record_round_trips_and_a_forged_one_is_refused() -> None:
    good = record(BASE, {"o": "1"})
    assert Record.of_wire(good.wire()) == good
    forged = {**good.wire(), "key": "0" * 64}
    with pytest.raises(ValueError, match="does not match"):
        Record.of_wire(forged)
    with pytest.raises(ValueError, match="another version"):
        Record.of_wire({**good.wire(), "version": 99})
    with pytest.raises(ValueError):
        Record.of_wire({**good.wire(), "ingredients": {"file": "x"}})
    with pytest.raises(ValueError):
        Record.of_wire([1, 2])


def test_the_planning_pods_answer_fits_a_termination_message() -> None:
    from orchest_operator.cache.runplan import LIMIT, decode, encode

    selected = [f"step-{i:04d}-{'x' * 30}" for i in range(1000)]
    cached = {name: f"run-{i % 7}" for i, name in enumerate(selected) if i % 3}
    text = encode(selected, cached)
    assert len(text.encode()) <= LIMIT
    assert decode(text, selected) == cached
    # Runs with long names: those that do not fit are left out, their steps ask in their own pods.
    long = {name: f"{'r' * 250}-{i % 40}" for i, name in enumerate(selected)}
    kept = decode(encode(selected, long), selected)
    assert kept and len(encode(selected, long).encode()) <= LIMIT
    assert all(long[name] == run for name, run in kept.items()) and len(kept) < len(long)
    assert decode("Traceback", selected) is None
    assert decode(encode(selected[:3], {}), selected) is None
