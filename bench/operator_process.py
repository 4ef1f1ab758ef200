"""The operator as a separate process (``orchest operator --standalone``), and what it reports about itself.

A process of its own gives honest figures: its resident memory and CPU time are its alone (not the
emulator's, the fake kubelet's or the benchmark's, which share the benchmark's process), and it talks to
the API over HTTP exactly as it does in a cluster. Its Prometheus endpoint gives the operator's own view
of its reaction time (``orchest_reaction_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

REACTION = "orchest_reaction_seconds"


@dataclass(frozen=True)
class ProcessStats:
    rss_bytes: int
    peak_rss_bytes: int
    """The kernel's high-water mark of resident memory since the process started (``VmHWM``)."""
    cpu_seconds: float


def process_stats(pid: int) -> ProcessStats:
    """Memory and CPU time of a local process, from ``/proc`` (Linux)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    # /proc/<pid>/stat: fields 14 and 15 are user and system time in clock ticks; the command name
    # (field 2) may hold spaces, so count from the closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = stat[stat.rindex(")") + 2 :].split()
    hertz = os.sysconf("SC_CLK_TCK")
    return ProcessStats(
        rss_bytes=int(fields["VmRSS"].split()[0]) * 1024,
        peak_rss_bytes=int(fields["VmHWM"].split()[0]) * 1024,
        cpu_seconds=(int(ticks[11]) + int(ticks[12])) / hertz,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orchest_command() -> str:
    """The ``orchest`` console script of the interpreter running the benchmarks."""
    script = Path(sys.executable).with_name("orchest")
    if not script.exists():
        raise RuntimeError(f"{script} not found: install the project first (make bench does)")
    return str(script)


async def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of a Prometheus text endpoint: metric name → [(labels, value)]."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def histogram(
    before: Mapping[str, list[tuple[dict[str, str], float]]],
    after: Mapping[str, list[tuple[dict[str, str], float]]],
    name: str = REACTION,
) -> dict[str, Any]:
    """Observations of histogram ``name`` made between two scrapes: count, mean and the bucket bound that
    holds the 50th/95th/99th percentile (a histogram only knows which bucket a value fell in)."""

    def buckets(samples: Mapping[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
        return {float(labels["le"]): value for labels, value in samples.get(f"{name}_bucket", [])}

    def total(samples: Mapping[str, list[tuple[dict[str, str], float]]], suffix: str) -> float:
        return sum(value for _, value in samples.get(f"{name}{suffix}", []))

    old, new = buckets(before), buckets(after)
    cumulative = sorted((bound, count - old.get(bound, 0.0)) for bound, count in new.items())
    count = total(after, "_count") - total(before, "_count")
    result: dict[str, Any] = {
        "count": int(count),
        "mean": None,
        "p50_le": None,
        "p95_le": None,
        "p99_le": None,
    }
    if count <= 0:
        return result
    result["mean"] = (total(after, "_sum") - total(before, "_sum")) / count
    for q in (50, 95, 99):
        bound = next((b for b, c in cumulative if c >= count * q / 100), None)
        result[f"p{q}_le"] = bound
    return result


class OperatorProcess:
    """``orchest operator --standalone -A --metrics-port N`` with ``KUBECONFIG`` pointing at the emulator."""

    def __init__(self, process: asyncio.subprocess.Process, metrics_url: str, log: Path) -> None:
        self.process = process
        self.metrics_url = metrics_url
        self.log = log

    @classmethod
    async def start(
        cls, kubeconfig: Path, log: Path, env: Mapping[str, str] | None = None
    ) -> OperatorProcess:
        port = free_port()
        environment = {**os.environ, **(env or {}), "KUBECONFIG": str(kubeconfig)}
        # ORCHEST_BENCH_PROFILE=DIR: run the operator under cProfile, one stats file per operator started.
        profile = environment.get("ORCHEST_BENCH_PROFILE")
        command = [orchest_command()]
        if profile:
            Path(profile).mkdir(parents=True, exist_ok=True)
            out = Path(profile) / f"operator-{log.stem}-{port}.prof"
            command = [sys.executable, "-P", "-m", "cProfile", "-o", str(out), "-m", "orchest_operator.cli"]
        with log.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                *command,
                "operator",
                "--standalone",
                "--metrics-port",
                str(port),
                env=environment,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
            )
        return cls(process, f"http://127.0.0.1:{port}/metrics", log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def stats(self) -> ProcessStats:
        return process_stats(self.pid)

    def failure(self) -> str:
        """Why the process ended early, with the tail of its log."""
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        return f"the operator exited with code {self.process.returncode}:\n" + "\n".join(tail)

    async def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
