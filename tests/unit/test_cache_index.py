"""The index on disk: records round-trip, corrupt or foreign ones are misses, unreadable ones are errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchest_operator.cache.index import CacheError, Directory, Index, decide, key_maker, remember
from orchest_operator.cache.key import recipes
from orchest_operator.models import PipelineSpec

SPEC = PipelineSpec.model_validate(
    {
        "cache": True,
        "steps": [
            {"name": "make", "file": "make.py", "outputs": ["out/*.txt"]},
            {"name": "use", "file": "use.py", "dependsOn": ["make"]},
        ],
    }
)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "make.py").write_text("print(1)\n")
    (tmp_path / "use.py").write_text("print(2)\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.txt").write_text("a\n")
    return tmp_path


def executed(base: Path, step: str, run: str = "r1"):
    maker = key_maker(base, recipes(SPEC))
    verdict = decide(base, maker, "p", step)
    assert not verdict.cached and verdict.ingredients is not None
    remember(base, "p", step, run, verdict.ingredients, SPEC.step(step).outputs or [])
    return verdict


def test_a_recorded_execution_is_reused_until_its_output_changes(base: Path) -> None:
    assert executed(base, "make").reason == "no earlier execution"
    hit = decide(base, key_maker(base, recipes(SPEC)), "p", "make")
    assert hit.cached and hit.cached_from == "r1"
    (base / "out" / "a.txt").write_text("edited\n")
    assert decide(base, key_maker(base, recipes(SPEC)), "p", "make").reason == "output out/a.txt changed"
    (base / "out" / "a.txt").unlink()
    assert decide(base, key_maker(base, recipes(SPEC)), "p", "make").reason == "output out/a.txt missing"


def test_nothing_but_whole_records_is_ever_left(base: Path) -> None:
    executed(base, "make")
    files = sorted(p.relative_to(base).as_posix() for p in (base / ".orchest").rglob("*") if p.is_file())
    assert len(files) == 2 and all(f.endswith(".json") for f in files)


@pytest.mark.parametrize("garbage", ["{not json", '{"version": 99}', "[]", '{"version": 1}', "\udcff"])
def test_a_corrupt_or_foreign_record_is_a_miss(base: Path, garbage: str) -> None:
    verdict = executed(base, "make")
    path = base / ".orchest" / "cache" / "records" / f"{verdict.key}.json"
    path.write_bytes(garbage.encode(errors="surrogateescape"))
    again = decide(base, key_maker(base, recipes(SPEC)), "p", "make")
    assert not again.cached and again.reason.startswith("cache record unusable")


def test_an_unreadable_index_is_an_error_and_loses_nothing(base: Path) -> None:
    # Root reads any file whatever its mode: a record that is a directory cannot be read by anyone.
    verdict = executed(base, "make")
    record = base / ".orchest" / "cache" / "records" / f"{verdict.key}.json"
    kept = record.read_bytes()
    record.unlink()
    record.mkdir()
    (record / "x").write_bytes(kept)
    with pytest.raises(CacheError, match=r"cannot read the cache index \.orchest/cache/records/"):
        decide(base, key_maker(base, recipes(SPEC)), "p", "make")
    assert (record / "x").read_bytes() == kept


def test_a_glob_cannot_leave_the_directory_through_a_link(base: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("x")
    (base / "out" / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(CacheError, match="leaves the pipeline directory through"):
        Directory(base).expand(["out/*.txt"])
    with pytest.raises(CacheError, match="leaves the pipeline directory"):
        Directory(base).expand(["../x"])


def test_globs_skip_the_orchest_directory_and_expand_directories(base: Path) -> None:
    executed(base, "make")
    (base / "out" / "deep").mkdir()
    (base / "out" / "deep" / "b.txt").write_text("b")
    assert set(Directory(base).expand(["**/*.json", "out"])) == {"out/a.txt", "out/deep/b.txt"}


def test_a_downstream_step_reuses_while_the_upstream_output_is_the_same(base: Path) -> None:
    executed(base, "make")
    executed(base, "use")
    (base / "make.py").write_text("print('same output')\n")
    maker = key_maker(base, recipes(SPEC))
    assert decide(base, maker, "p", "make").reason == "make.py changed"
    assert decide(base, maker, "p", "use").cached
    (base / "out" / "a.txt").write_text("new\n")
    later = decide(base, key_maker(base, recipes(SPEC)), "p", "use")
    assert later.reason == "output out/a.txt of upstream make changed"


def test_prune_keeps_recent_records_and_drops_old_and_corrupt_ones(base: Path) -> None:
    old = executed(base, "make")
    executed(base, "use")
    records = base / ".orchest" / "cache" / "records"
    long_ago = time.time() - 40 * 86400
    os.utime(records / f"{old.key}.json", (long_ago, long_ago))
    (records / "junk.json").write_text("{")
    deleted, kept = Index(base).prune(keep_days=30)
    assert deleted == 2 and kept == 3  # use's record, and both latest copies
    assert not (records / f"{old.key}.json").exists()


def test_planning_looks_without_marking_records_used(base: Path) -> None:
    from orchest_operator.cache.plan import plan

    verdict = executed(base, "make")
    record = base / ".orchest" / "cache" / "records" / f"{verdict.key}.json"
    os.utime(record, (1000, 1000))
    rows = plan(base, SPEC, "p", ["make"])
    assert rows[0].cached and record.stat().st_mtime == 1000
    assert decide(base, key_maker(base, recipes(SPEC)), "p", "make").cached
    assert record.stat().st_mtime > 1000
