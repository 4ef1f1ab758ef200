"""``python -m bench``: run benchmarks, print a table per benchmark, write one JSON file each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.cache import bench_cache
from bench.chain import bench_chain
from bench.concurrent import bench_concurrent
from bench.fanout import bench_fanout
from bench.local import bench_local
from bench.report import Result, repeated, table, write
from bench.status import bench_status
from bench.target import TargetOptions, arena

RESULTS = Path(__file__).parent / "results"
NAMES = ("chain", "fanout", "concurrent", "status", "local", "cache")
LIMITS = {"chain": 1000, "fanout": 999, "status": 1000, "cache": 1000}
"""A Pipeline has at most 1000 steps; a fan-out has one more than it fans out to."""
MAIN_SIZE = {
    "chain": "chain",
    "fanout": "fanout",
    "concurrent": "runs",
    "status": "status_steps",
    "local": "notebooks",
    "cache": "cache_notebooks",
}


@dataclass(frozen=True)
class Sizes:
    chain: int
    fanout: int
    runs: int
    status_steps: int
    notebooks: int
    cache_notebooks: int = 100
    """Chained notebooks of the all-cached run (issue 16: 100)."""
    status_parallelism: int = 100
    step_seconds: tuple[float, ...] = (0.0, 1.0)
    job_complete_delay: float = 1.0
    """How long the fake kubelet takes to mark a Job Complete after its pod ended (the real Job
    controller batches pod updates for about a second)."""


QUICK = Sizes(chain=10, fanout=100, runs=20, status_steps=1000, notebooks=8)
FULL = Sizes(chain=20, fanout=200, runs=50, status_steps=1000, notebooks=20)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _steps(most: int) -> Callable[[str], int]:

    def parse(text: str) -> int:
        value = _positive(text)
        if value > most:
            raise argparse.ArgumentTypeError(
                f"at most {most} (a Pipeline has at most 1000 steps), got {value}"
            )
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be between 0 and 60 seconds, got {value}")
    return value


def _seconds_list(text: str) -> tuple[float, ...]:
    values = tuple(_seconds(part) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected run times in seconds separated by commas, e.g. 0,1")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of orchest against baselines measured in the same run. Without names, the "
        "quick set runs all of them; --full uses the sizes of issue 8.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(NAMES)} (default: all)")
    p.add_argument("--full", action="store_true", help="the issue's default sizes (slower)")
    p.add_argument("--size", type=_positive, help="the main size of every selected benchmark")
    p.add_argument("--chain", type=_steps(1000), metavar="N", help="steps of the chain")
    p.add_argument("--fanout", type=_steps(999), metavar="M", help="steps fanned out to (after one root)")
    p.add_argument("--runs", type=_positive, metavar="R", help="concurrent runs")
    p.add_argument("--status-steps", type=_steps(1000), metavar="S", help="steps of the status-size run")
    p.add_argument("--notebooks", type=_positive, metavar="K", help="notebooks of the local runner benchmark")
    p.add_argument(
        "--cache-notebooks", type=_steps(1000), metavar="N", help="notebooks of the all-cached run"
    )
    p.add_argument("--step-seconds", type=_seconds_list, metavar="S,S", help="run times of chain steps")
    p.add_argument("--job-complete-delay", type=_seconds, metavar="S", help="fake Job controller delay")
    p.add_argument(
        "--api-latency",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="emulator only: delay every API request by S seconds, like a real API server's round trip",
    )
    p.add_argument("--kubeconfig", type=Path, help="run against this cluster (its operator already running)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument(
        "--fake-kubelet",
        action="store_true",
        help="the cluster has no kubelets or Job controller (a bare API server): simulate them",
    )
    p.add_argument("--metrics-url", help="the cluster operator's /metrics URL, for its reaction histogram")
    p.add_argument(
        "--step-image", help="image of steps and baseline Jobs on a cluster (default: the release's)"
    )
    p.add_argument("--storage-class", help="StorageClass of the volume seeded with the step scripts")
    p.add_argument("--access-mode", default="ReadWriteOnce", help="access mode of that volume")
    p.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="N",
        help="run each benchmark N times and print each ratio's min, median and max over them",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help=f"where JSON goes (default: {RESULTS})")
    return p


def sizes_of(args: argparse.Namespace, names: Sequence[str]) -> Sizes:
    sizes = FULL if args.full else QUICK
    if args.size is not None:
        sizes = replace(sizes, **{MAIN_SIZE[n]: args.size for n in names})
    explicit = {
        field: getattr(args, field)
        for field in (
            "chain",
            "fanout",
            "runs",
            "status_steps",
            "notebooks",
            "cache_notebooks",
            "step_seconds",
            "job_complete_delay",
        )
        if getattr(args, field) is not None
    }
    return replace(sizes, **explicit)


Bench = Callable[[], Awaitable[Result]]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while a benchmark measures. The emulator, the fake kubelet
    and the watches that time both sides live here, and after a few repeats a full collection of this
    process took 0.8-0.9 s: landing inside one side's window, it tripled that side's time (a fan-out of
    999 measured 3.2x the bare client, 1.0x in the other repeats). One collection before, none during."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def run_all(
    names: Sequence[str], sizes: Sizes, options: TargetOptions, results: Path, repeat: int = 1
) -> list[Path]:
    every_seconds = (*sizes.step_seconds, 0.0, 1.0)

    def on_cluster(name: str, body: Callable[..., Awaitable[Result]], *args: object) -> Bench:
        async def go() -> Result:
            async with arena(options, name, every_seconds) as place:
                with collector_paused():
                    return await body(place, *args)

        return go

    benches: dict[str, Bench] = {
        "chain": on_cluster("chain", bench_chain, sizes.chain, sizes.step_seconds, sizes.job_complete_delay),
        "fanout": on_cluster("fanout", bench_fanout, sizes.fanout, sizes.job_complete_delay),
        "concurrent": on_cluster(
            "concurrent", bench_concurrent, sizes.runs, max(sizes.step_seconds), sizes.job_complete_delay
        ),
        "status": on_cluster(
            "status",
            bench_status,
            sizes.status_steps,
            sizes.status_parallelism,
            sizes.job_complete_delay,
        ),
        "local": lambda: bench_local(sizes.notebooks),
        "cache": on_cluster("cache", bench_cache, sizes.cache_notebooks, sizes.job_complete_delay),
    }
    written = []
    for name in names:
        runs = []
        for _ in range(repeat):
            began = time.perf_counter()
            result = await benches[name]()
            result.parameters["duration_s"] = round(time.perf_counter() - began, 1)
            print(table(result), flush=True)
            path = write(result, options.describe(), results)
            print(f"  -> {path}\n", flush=True)
            written.append(path)
            runs.append(result)
        if repeat > 1:
            print(repeated(runs) + "\n", flush=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        cli.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(NAMES)}")
    names = [n for n in NAMES if n in args.names] if args.names else list(NAMES)
    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        cli.error(f"--kubeconfig {args.kubeconfig}: no such file")
    if args.kubeconfig is None and (args.fake_kubelet or args.metrics_url or args.context):
        cli.error("--fake-kubelet, --metrics-url and --context need --kubeconfig")
    if args.kubeconfig is not None and args.api_latency:
        cli.error("--api-latency delays the emulator; a real cluster has its own latency")
    sizes = sizes_of(args, names)
    for name, most in LIMITS.items():
        if name in names and getattr(sizes, MAIN_SIZE[name]) > most:
            cli.error(f"--size {args.size}: {name} takes at most {most} (a Pipeline has at most 1000 steps)")
    with tempfile.TemporaryDirectory(prefix="orchest-bench-") as work:
        options = TargetOptions(
            work_dir=Path(work),
            kubeconfig=args.kubeconfig,
            context=args.context,
            fake_kubelet=args.fake_kubelet,
            metrics_url=args.metrics_url,
            storage_class=args.storage_class,
            access_mode=args.access_mode,
            api_latency=args.api_latency,
            **({"step_image": args.step_image} if args.step_image else {}),
        )
        where = "the emulator" if options.emulated else str(options.kubeconfig)
        print(f"benchmarks {', '.join(names)} against {where}; {sizes}", flush=True)
        asyncio.run(run_all(names, sizes, options, args.results, args.repeat))
    return 0
