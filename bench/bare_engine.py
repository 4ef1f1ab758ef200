"""A bare Job engine in a process of its own: the baselines that drive many Jobs at once.

The operator runs in a process of its own, with a core to itself. A baseline driven from the benchmark's
process would share a core with the emulator and the fake kubelet, and be slowed by the very thing it is
compared on. This process is given a plan, Jobs and the Jobs each needs, and creates every Job the moment
the pods of all it needs are seen Succeeded on its own pod watch (the floor of the chain benchmark, for
any DAG); Jobs that need nothing are created at once, all together.

Protocol on stdin/stdout, one line each: the plan as JSON in; ``ready`` out once the watch is open;
``go`` in; ``done`` out once every Job is created (or ``error: ...``, and exit 1); it exits when its stdin
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.operator_process import ProcessStats, process_stats
from bench.streams import objects
from tests.support.api import KubeApi

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
JOB_NAME = "batch.kubernetes.io/job-name"
_PLAN_LIMIT = 1 << 28  # the plan is one line: 1000 Jobs are about 3 MB
PlanJob = dict[str, Any]
"""``{"manifest": <Job>, "needs": [<Job name>, ...]}``"""


def plan_job(manifest: dict[str, Any], needs: Iterable[str] = ()) -> PlanJob:
    return {"manifest": manifest, "needs": list(needs)}


class Plan:
    """Which Jobs may be created once a given Job's pod has Succeeded."""

    def __init__(self, jobs: Sequence[PlanJob]) -> None:
        self.manifests = {j["manifest"]["metadata"]["name"]: j["manifest"] for j in jobs}
        self.waiting = {j["manifest"]["metadata"]["name"]: set(j["needs"]) for j in jobs}
        unknown = {n for needs in self.waiting.values() for n in needs} - self.waiting.keys()
        if unknown:
            raise ValueError(f"the plan needs Jobs it does not hold: {sorted(unknown)}")
        self.dependents: dict[str, list[str]] = {}
        for name, needs in self.waiting.items():
            for need in needs:
                self.dependents.setdefault(need, []).append(name)
        self.succeeded: set[str] = set()

    def first(self) -> list[str]:
        return [name for name, needs in self.waiting.items() if not needs]

    def succeed(self, job: str) -> list[str]:
        """Record ``job`` as done; the Jobs that this released."""
        if job in self.succeeded or job not in self.waiting:
            return []
        self.succeeded.add(job)
        released = []
        for dependent in self.dependents.get(job, ()):
            self.waiting[dependent].discard(job)
            if not self.waiting[dependent]:
                released.append(dependent)
        return released


async def drive(api: KubeApi, namespace: str, plan: Plan, lines: asyncio.StreamReader) -> None:
    _, version = await api.list_with_version(PODS, namespace)
    created: list[asyncio.Task[Any]] = []

    def create(names: Iterable[str]) -> None:
        created.extend(asyncio.create_task(api.create(JOBS, plan.manifests[n])) for n in names)

    async def follow() -> None:
        # From the list's version on; pods listed again after an expired version release nothing twice.
        async for _kind, pod in objects(api, PODS, namespace, version=version):
            labels = (pod.get("metadata") or {}).get("labels") or {}
            job = labels.get(JOB_NAME) or labels.get("job-name")
            if job and (pod.get("status") or {}).get("phase") == "Succeeded":
                create(plan.succeed(job))

    watching = asyncio.create_task(follow())
    try:
        print("ready", flush=True)
        if (await lines.readline()).strip() != b"go":
            raise RuntimeError("expected go")
        create(plan.first())
        while True:
            for task in (*created, watching):
                if task.done() and task.exception() is not None:
                    task.result()  # a refused create or a broken watch ends the engine, with its error
            if len(created) == len(plan.manifests) and all(t.done() for t in created):
                break
            await asyncio.wait([*(t for t in created if not t.done()), watching], timeout=0.5)
        print("done", flush=True)
        await lines.read()  # stay, for the benchmark to read this process's CPU time, until stdin closes
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def _main(kubeconfig: str, context: str | None) -> int:
    loop = asyncio.get_running_loop()
    lines = asyncio.StreamReader(limit=_PLAN_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(lines), sys.stdin)
    request = json.loads(await lines.readline())
    async with KubeApi.from_kubeconfig(
        kubeconfig, context, headers={"User-Agent": "orchest-bench/baseline"}
    ) as api:
        try:
            await drive(api, request["namespace"], Plan(request["jobs"]), lines)
        except Exception as err:  # the benchmark reads one line and stops
            print(f"error: {err}", flush=True)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--kubeconfig", required=True)
    args.add_argument("--context")
    parsed = args.parse_args(argv)
    return asyncio.run(_main(parsed.kubeconfig, parsed.context))


class BareEngine:
    """The benchmark's side: start the process, hand it a plan, say go, wait until it is done."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls, kubeconfig: Path, context: str | None, namespace: str, jobs: Sequence[PlanJob]
    ) -> BareEngine:
        command = [sys.executable, "-m", "bench.bare_engine", "--kubeconfig", str(kubeconfig)]
        if context:
            command += ["--context", context]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )
        engine = cls(process)
        assert process.stdin is not None
        process.stdin.write(json.dumps({"namespace": namespace, "jobs": list(jobs)}).encode() + b"\n")
        await engine._expect("ready")
        return engine

    async def go(self) -> float:
        """Start it; when it was told to, on this process's ``perf_counter``."""
        assert self.process.stdin is not None
        began = time.perf_counter()
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        return began

    async def done(self, timeout: float) -> None:
        await asyncio.wait_for(self._expect("done"), timeout)

    def stats(self) -> ProcessStats:
        return process_stats(self.process.pid)

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
        await self.process.wait()

    async def __aenter__(self) -> BareEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _expect(self, word: str) -> None:
        assert self.process.stdout is not None
        line = (await self.process.stdout.readline()).decode().strip()
        if line != word:
            await self.stop()
            raise RuntimeError(f"the bare engine said {line or 'nothing'!r} where {word!r} was expected")


if __name__ == "__main__":
    sys.exit(main())
