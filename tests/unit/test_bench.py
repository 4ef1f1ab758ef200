"""The benchmarks (``python -m bench``) at tiny sizes: every benchmark runs end to end against the emulator
and writes JSON whose ratios are the quotients of the measurements they name. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kmock._internal.dicts import merge_patch_dict

from bench.bare_engine import BareEngine, Plan, plan_job
from bench.cli import NAMES, main
from bench.emulator import merge_diff
from bench.report import Ratio, Result, repeated
from orchest_operator.run_controller import merge_patch
from tests.support.cluster import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--chain", "3",
    "--fanout", "5",
    "--runs", "2",
    "--status-steps", "50",
    "--notebooks", "1",
    "--cache-notebooks", "3",
    "--step-seconds", "0,0.1",
    "--job-complete-delay", "0.1",
]  # fmt: skip


def lookup(measurements: dict[str, Any], path: str) -> Any:
    node: Any = measurements
    for part in path.split("."):
        node = node[part]
    return node


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One run of every benchmark at tiny sizes, shared by the checks below (~20 s).

    The local runner's benchmark runs meanwhile as ``python -m bench local`` (no timing is checked, so
    sharing the cores costs nothing here), which also covers the module entry point ``make bench`` uses.
    """
    out = tmp_path_factory.mktemp("bench-results")
    local = subprocess.Popen(
        [sys.executable, "-m", "bench", "local", *TINY, "--results", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert main(["chain", "fanout", "concurrent", "status", "cache", *TINY, "--results", str(out)]) == 0
    finally:
        output, _ = local.communicate(timeout=90)
    assert local.returncode == 0, output
    files = sorted(out.glob("*.json"))
    loaded = {json.loads(f.read_text())["benchmark"]: json.loads(f.read_text()) for f in files}
    assert {f.name.rsplit("-", 1)[0] for f in files} == set(NAMES)
    return loaded


@pytest.mark.timeout(300)  # the fixture takes ~20 s alone, several times that under a full parallel suite
def test_every_benchmark_writes_its_json(results: dict[str, dict[str, Any]]) -> None:
    assert set(results) == set(NAMES)
    for name, data in results.items():
        assert set(data) == {
            "benchmark", "date", "machine", "target", "parameters", "measurements", "ratios", "notes",
        }, name  # fmt: skip
        assert data["machine"]["cpus"] >= 1
        assert data["ratios"], f"{name} reports no ratio"
        assert data["parameters"]["duration_s"] > 0


def test_ratios_are_quotients_of_the_named_measurements(results: dict[str, dict[str, Any]]) -> None:
    for name, data in results.items():
        for label, ratio in data["ratios"].items():
            top = lookup(data["measurements"], ratio["numerator"])
            bottom = lookup(data["measurements"], ratio["denominator"])
            assert isinstance(top, int | float) and isinstance(bottom, int | float), (name, label)
            assert bottom > 0, (name, label)
            assert ratio["value"] == pytest.approx(top / bottom), (name, label)


def test_measurements_come_from_the_runs(results: dict[str, dict[str, Any]]) -> None:
    chain = results["chain"]["measurements"]
    assert set(chain) >= {"steps_0ms", "steps_100ms", "reaction_s", "operator_histogram"}
    assert chain["reaction_s"]["operator"]["count"] == 2 * (3 - 1)  # two chains of three steps
    assert chain["operator_histogram"]["count"] >= 2
    fanout = results["fanout"]["measurements"]
    assert fanout["bare"]["requests_per_step"] == {"total": 1.0, "by_request": {"POST batch/v1/jobs": 1.0}}
    assert fanout["operator"]["requests_per_step"]["by_request"]["POST batch/v1/jobs"] == pytest.approx(1.0)
    concurrent = results["concurrent"]["measurements"]
    assert concurrent["operator"]["peak_rss_mb"] >= concurrent["operator"]["idle_rss_mb"] > 0
    assert concurrent["bare"]["slowest_wall_s"] >= concurrent["bare"]["median_wall_s"] > 0
    assert concurrent["harness"]["busy"] > 0 and concurrent["operator"]["busy"] > 0
    status = results["status"]["measurements"]
    assert status["object"]["bytes"] > status["object"]["snapshot_bytes"] > 0
    writes = status["status_writes"]
    assert writes["count"] >= 2 and writes["total_body_bytes"] >= writes["largest_body_bytes"] > 0
    local = results["local"]["measurements"]
    assert local["orchest_sequential_s"] > 0 and local["papermill_cli_s"] > 0
    # One notebook: its step is the median, from the command's start to its Succeeded line.
    assert 0 < local["orchest_step_median_s"] <= local["orchest_sequential_s"]
    assert local["papermill_cli_step_median_s"] == pytest.approx(local["papermill_cli_s"])
    assert local["orchest_slow_steps"] == local["papermill_cli_slow_steps"] == 0
    cache = results["cache"]["measurements"]
    assert cache["local"]["all_cached_s"] > 0 and cache["operator"]["all_cached_s"] > 0
    assert cache["step_runner"]["hit_s"] > 0


def test_command_line_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv, needle in [
        (["nope"], "unknown benchmark nope: choose from chain, fanout"),
        (["--chain", "0"], "must be 1 or more, got 0"),
        (["--repeat", "0"], "must be 1 or more, got 0"),
        (["--step-seconds", "x"], "'x' is not a number of seconds"),
        (["--fake-kubelet"], "need --kubeconfig"),
        (["--kubeconfig", str(tmp_path / "missing")], "no such file"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"phase": "Running", "steps": {"a": {"phase": "Running"}, "b": {"phase": "Pending"}}},
         {"phase": "Running", "steps": {"a": {"phase": "Succeeded", "completionTime": "t"},
                                         "b": {"phase": "Running", "jobName": "r-b"}}}),
        ({"steps": {"a": {"phase": "Failed", "message": "boom"}}, "progress": "0/1"},
         {"steps": {"a": {"phase": "Pending"}}}),
        ({"conditions": [{"type": "Succeeded", "status": "Unknown"}]},
         {"conditions": [{"type": "Succeeded", "status": "True"}], "completionTime": "t"}),
    ],
)  # fmt: skip
def test_the_operator_sends_the_smallest_status_patch(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The status-size benchmark's yardstick and the operator's patch agree, and the patch works."""
    patch = merge_patch(old, new)
    assert patch == merge_diff(old, new)
    assert dict(merge_patch_dict(old, patch)) == new
    assert "steps" not in patch or set(patch["steps"]) <= {"a", "b"}


def test_repeated_runs_report_each_ratio_s_spread() -> None:
    def run(wall: float, alone: float) -> Result:
        ratio = Ratio("slowest/alone", "concurrent.wall_s", "alone.wall_s", "<= 1.2")
        measured = {"concurrent": {"wall_s": wall}, "alone": {"wall_s": alone}}
        return Result("concurrent", {}, measurements=measured, ratios=[ratio])

    text = repeated([run(12.0, 6.0), run(7.5, 6.0), run(9.0, 6.0), run(1.0, 0.0)])
    assert text.splitlines()[0] == "== concurrent: each ratio over 4 runs"
    # min, median and max of 2.0, 1.25 and 1.5; the run whose baseline is 0 has no ratio and is left out.
    assert text.splitlines()[2].split() == ["slowest/alone", "1.25", "1.5", "2", "<=", "1.2"]


def test_the_bare_engine_releases_a_job_when_all_it_needs_succeeded() -> None:
    def job(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}}

    plan = Plan([plan_job(job("a")), plan_job(job("b"), ["a"]), plan_job(job("c"), ["a", "b"])])
    assert plan.first() == ["a"]
    assert plan.succeed("a") == ["b"]
    assert plan.succeed("a") == [], "a pod seen Succeeded twice releases nothing twice"
    assert plan.succeed("elsewhere") == []
    assert plan.succeed("b") == ["c"]
    with pytest.raises(ValueError, match=r"the plan needs Jobs it does not hold: \['x'\]"):
        Plan([plan_job(job("a"), ["x"])])


async def test_the_bare_engine_says_why_it_cannot_start(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    refused = r"the bare engine said .error: Cannot connect to host 127\.0\.0\.1:1.* where 'ready'"
    with pytest.raises(RuntimeError, match=refused):
        await BareEngine.start(kubeconfig, None, "ns", [plan_job({"metadata": {"name": "a"}})])
