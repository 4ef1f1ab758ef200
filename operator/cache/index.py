"""The cache's side that touches the disk: file hashes and globs of the pipeline directory, and the index
in ``.orchest/cache/`` on the pipeline's volume.

The index holds one JSON record per key (``records/<key>.json``) and, per pipeline and step, a copy of the
latest record (``latest/<pipeline>/<step>.json``), which is what a miss is explained against. Every write
goes to a temporary file that is then renamed over the target: a reader (another step's pod, a concurrent
``orchest run``) sees the old record or the new one, never half of one. A record that cannot be parsed, or
that another version wrote, is a miss with a reason; a directory that cannot be read is a ``CacheError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchest_operator.cache.key import Ingredients, KeyMaker, Recipe, Record, Unkeyed, Verdict, judge

INDEX = Path(".orchest", "cache")
_PRIVATE = Path(".orchest")
_CHUNK = 1 << 20


class CacheError(Exception):
    """The index or a glob cannot be used; one readable line."""


def _why(err: OSError) -> str:
    return err.strerror or str(err)


@dataclass(frozen=True)
class Directory:
    """The pipeline directory as cache keys see it: content hashes, and what globs match."""

    base: Path

    def probe(self, relative: str) -> str | None:
        """The sha256 of a file, None when it is not there; a file that cannot be read is a CacheError."""
        path = self.base / relative
        try:
            with path.open("rb") as stream:
                sha = hashlib.sha256()
                while chunk := stream.read(_CHUNK):
                    sha.update(chunk)
                return sha.hexdigest()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            raise CacheError(f"cannot read {relative}: {_why(err)}") from None

    def expand(self, globs: Iterable[str]) -> dict[str, str]:
        """Files the globs match now (a matched directory stands for every file below it), with their
        sha256. ``.orchest/`` (runs, the index) is never matched. A glob that leaves the pipeline
        directory, directly or through a symbolic link, is a CacheError."""
        root = self.base.resolve()
        found: dict[str, str] = {}
        for pattern in globs:
            if pattern.startswith("/") or ".." in pattern.split("/"):
                raise CacheError(f"glob {pattern!r} leaves the pipeline directory")
            try:
                matches = sorted(self.base.glob(pattern))
            except (OSError, ValueError) as err:
                raise CacheError(f"glob {pattern!r}: {err}") from None
            for match in matches:
                files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
                for path in files:
                    real = path.resolve()
                    if not real.is_relative_to(root):
                        raise CacheError(f"glob {pattern!r} leaves the pipeline directory through {path}")
                    relative = path.relative_to(self.base)
                    if relative.parts[:1] == _PRIVATE.parts:
                        continue
                    sha = self.probe(relative.as_posix())
                    if sha is not None:
                        found[relative.as_posix()] = sha
        return found


@dataclass(frozen=True)
class Index:
    """The records under ``<pipeline directory>/.orchest/cache``."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / INDEX

    def _record_path(self, key: str) -> Path:
        return self.root / "records" / f"{key}.json"

    def _latest_path(self, pipeline: str, step: str) -> Path:
        return self.root / "latest" / pipeline / f"{step}.json"

    def _read(self, path: Path) -> Record | str | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            return f"{path.name} is not text"
        except OSError as err:
            raise CacheError(f"cannot read the cache index {self._shown(path)}: {_why(err)}") from None
        try:
            return Record.of_wire(json.loads(text))
        except ValueError as err:
            return f"{path.name}: {err}"

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base))
        except ValueError:
            return str(path)

    def exact(self, key: str) -> Record | str | None:
        found = self._read(self._record_path(key))
        if isinstance(found, Record) and found.key != key:
            return f"{key}.json holds the record of another key"
        return found

    def latest(self, pipeline: str, step: str) -> Record | str | None:
        found = self._read(self._latest_path(pipeline, step))
        return found if not isinstance(found, Record) or found.step == step else None

    def touch(self, key: str) -> None:
        """Mark a record as used now, for ``prune``; best effort (a read-only volume still serves hits)."""
        with contextlib.suppress(OSError):
            os.utime(self._record_path(key))

    def put(self, record: Record) -> None:
        text = json.dumps(record.wire(), indent=1, sort_keys=True) + "\n"
        try:
            _replace(self._record_path(record.key), text)
            _replace(self._latest_path(record.pipeline, record.step), text)
        except OSError as err:
            raise CacheError(f"cannot write the cache index {self._shown(self.root)}: {_why(err)}") from None

    def prune(self, keep_days: float, now: float | None = None) -> tuple[int, int]:
        """Delete records not used for ``keep_days`` days, and every corrupt one; (deleted, kept)."""
        cutoff = (time.time() if now is None else now) - keep_days * 86400
        deleted = kept = 0
        try:
            paths = sorted(self.root.glob("records/*.json")) + sorted(self.root.glob("latest/*/*.json"))
            for path in paths:
                stale = path.stat().st_mtime < cutoff or not isinstance(self._read(path), Record)
                if stale:
                    path.unlink(missing_ok=True)
                    deleted += 1
                else:
                    kept += 1
            for leftover in self.root.glob(".*.partial"):
                leftover.unlink(missing_ok=True)
        except OSError as err:
            raise CacheError(f"cannot prune the cache index {self._shown(self.root)}: {_why(err)}") from None
        return deleted, kept


def _replace(target: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``target``, then rename it over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def key_maker(base: Path, recipes: Mapping[str, Recipe]) -> KeyMaker:
    directory = Directory(base)
    return KeyMaker(recipes=recipes, probe=directory.probe, expand=directory.expand)


def decide(base: Path, maker: KeyMaker, pipeline: str, step: str, *, use: bool = True) -> Verdict:
    """Run or reuse ``step`` now, from the pipeline directory and the index: what the local runner asks
    before starting a step and what ``orchest step`` asks in a step's pod. ``use`` marks a record reused
    as used now (``prune`` keeps it); a plan only looks. Raises ``CacheError``."""
    if not maker.recipes[step].cache:
        return Verdict(False, "caching is off for this step")
    made = maker.ingredients(step)
    index = Index(base)
    directory = Directory(base)
    if isinstance(made, Unkeyed):
        return judge(made, None, None, {})
    exact = index.exact(made.key)
    latest = index.latest(pipeline, step) if not isinstance(exact, Record) else None
    outputs = {p: directory.probe(p) for p in exact.outputs} if isinstance(exact, Record) else {}
    verdict = judge(made, exact, latest, outputs)
    if verdict.cached and use:
        index.touch(made.key)
    return verdict


def remember(
    base: Path, pipeline: str, step: str, run: str, ingredients: Ingredients, outputs: Iterable[str]
) -> Record:
    """Record a successful execution with the outputs it left. Raises ``CacheError``."""
    record = Record(
        key=ingredients.key,
        pipeline=pipeline,
        step=step,
        run=run,
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        ingredients=ingredients,
        outputs=Directory(base).expand(outputs),
    )
    Index(base).put(record)
    return record
