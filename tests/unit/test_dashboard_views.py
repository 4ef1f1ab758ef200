"""The dashboard's pure side: objects → view models → HTML and live-update messages."""

from __future__ import annotations

import datetime
from typing import Any

from orchest_operator.dashboard import job_views, pages, updates, views

NOW = datetime.datetime(2026, 12, 6, 3, 10, 0, tzinfo=datetime.UTC)
STEPS = [
    {"name": "load", "file": "load.ipynb"},
    {"name": "fit", "file": "fit.py", "dependsOn": ["load"]},
    {"name": "plot", "file": "plot.ipynb", "dependsOn": ["load"]},
]


def run(name: str = "r1", created: str = "2026-12-06T03:00:00Z", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team", "creationTimestamp": created, "resourceVersion": "7"},
        "spec": {"pipelineRef": {"name": "p"}},
        "status": {"snapshot": {"pipeline": {"steps": STEPS}, "selected": ["load", "fit"]}, **status},
    }


def pod(name: str, job: str, created: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "team",
            "creationTimestamp": created,
            "labels": {"batch.kubernetes.io/job-name": job},
        },
        "status": {"phase": phase},
    }


def test_runs_are_listed_newest_first_with_duration_and_job() -> None:
    older = run(
        "a",
        "2026-12-06T02:00:00Z",
        phase="Succeeded",
        startTime="2026-12-06T02:00:00Z",
        completionTime="2026-12-06T02:01:05Z",
    )
    newer = run("b", "2026-12-06T03:00:00Z", phase="Running", startTime="2026-12-06T03:09:30Z")
    newer["metadata"]["ownerReferences"] = [{"kind": "PipelineJob", "name": "sweep"}]
    newer["spec"]["parameters"] = {"lr": 0.1, "depth": 3}
    rows = views.run_rows([older, newer], NOW)
    assert [r.name for r in rows] == ["b", "a"]
    assert views.format_duration(rows[1].duration) == "1m 05s"
    assert rows[0].duration == 30.0 and not rows[0].finished
    assert (rows[0].job, rows[0].job_parameters) == ("sweep", "depth=3, lr=0.1")
    assert rows[1].job is None and rows[1].job_parameters == ""
    newer["spec"].update(rerunOf="b0", failurePolicy="Continue")
    summary = pages.run_summary(views.run_detail(newer, views.PodIndex([]), NOW))
    assert '<a href="/runs/team/b0">b0</a>' in summary and "depth=3, lr=0.1" in summary
    assert "Continue" in summary and "sweep" in summary


def test_objects_the_models_would_reject_are_still_shown() -> None:
    odd = {"metadata": {"name": "x"}, "spec": "junk", "status": {"phase": "Cached", "steps": {"s": "junk"}}}
    [row] = views.run_rows(
        [
            odd,
        ],
        NOW,
    )
    assert (row.name, row.phase, row.pipeline, row.duration) == ("x", "Cached", "", None)
    detail = views.run_detail(odd, views.PodIndex([]), NOW)
    assert [r.phase for r in detail.step_rows] == ["Pending"]


def test_step_rows_carry_pods_failures_and_gone_pods() -> None:
    status = {
        "phase": "Failed",
        "steps": {
            "load": {
                "phase": "Succeeded",
                "jobName": "j-load",
                "attempts": 1,
                "startTime": "2026-12-06T03:00:00Z",
                "completionTime": "2026-12-06T03:00:10Z",
            },
            "fit": {
                "phase": "Failed",
                "jobName": "j-fit",
                "attempts": 2,
                "message": "BackoffLimitExceeded",
                "failure": {"cell": 3, "ename": "ValueError", "evalue": "bad input"},
            },
        },
    }
    pods = views.PodIndex(
        [
            pod("j-fit-old", "j-fit", "2026-12-06T03:01:00Z", "Failed"),
            pod("j-fit-new", "j-fit", "2026-12-06T03:02:00Z", "Failed"),
        ]
    )
    detail = views.run_detail(run(**status), pods, NOW)
    load, fit, plot = detail.step_rows
    assert (load.pod, load.pod_gone, load.duration) == (None, True, 10.0)
    assert (fit.pod, fit.attempts, fit.failure_cell, fit.failure_ename) == ("j-fit-new", 2, "3", "ValueError")
    assert plot.phase is None and detail.selected == 2
    cached = {"phase": "Cached", "cachedFrom": "r0", "reason": "", "message": "same inputs"}
    r = run(**{**status, "steps": {**status["steps"], "plot": cached}})
    plot_row = views.run_detail(r, pods, NOW).step_rows[2]
    assert (plot_row.phase, plot_row.cached_from, plot_row.pod_gone) == ("Cached", "r0", False)
    assert 'cached from <a class="cached-from" href="r0">r0</a>' in pages.step_row_html(plot_row)
    assert "taken from the cache (run r0)" in views.step_log_target(r, "plot", pods)[1]
    # Before the pod informer has listed, nothing is called gone.
    assert not views.run_detail(run(**status), pods, NOW, pods_known=False).step_rows[0].pod_gone


def test_log_targets_say_plainly_why_there_is_no_log() -> None:
    status = {
        "steps": {
            "load": {"phase": "Succeeded", "jobName": "j-load"},
            "fit": {"phase": "Running", "jobName": "j-fit"},
            "plot": {"phase": "Reused"},
        }
    }
    pods = views.PodIndex([pod("j-fit-1", "j-fit", "2026-12-06T03:01:00Z")])
    r = run(**status)
    assert views.step_log_target(r, "fit", pods) == ("j-fit-1", "")
    pod_name, why = views.step_log_target(r, "load", pods)
    assert pod_name is None and "is gone" in why and "j-load" in why
    assert "reused" in views.step_log_target(r, "plot", pods)[1]
    assert "not part of this run" in views.step_log_target(r, "nope", pods)[1]
    starting = run(steps={"fit": {"phase": "Running", "jobName": "j-new"}})
    assert "not been created yet" in views.step_log_target(starting, "fit", pods)[1]
    assert not views.run_detail(starting, pods, NOW).step_rows[1].pod_gone, "its pod may be on its way"


def test_pipeline_view_has_the_session_commands() -> None:
    pipeline = {
        "metadata": {"name": "quickstart", "namespace": "team"},
        "spec": {"parameters": {"seed": 7}, "steps": STEPS, "session": {"enabled": True}},
        "status": {"session": {"phase": "Ready", "tokenSecret": "quickstart-session-token"}, "lastRun": "r9"},
    }
    view = views.pipeline_view(pipeline)
    assert view.port_forward == "kubectl -n team port-forward svc/quickstart-jupyter 8888"
    assert "secret quickstart-session-token" in view.token_command
    assert (view.session_phase, view.parameters, view.step_count) == ("Ready", [("seed", "7")], 3)
    assert view.steps[1].depends_on == "load"
    off = views.pipeline_view({"metadata": {"name": "q", "namespace": "t"}, "spec": {"steps": STEPS}})
    assert (off.session_enabled, off.session_phase, off.port_forward) == (False, "Stopped", "")


EVIL = '<script>alert("x")</script>'


def test_every_cluster_string_is_escaped_in_pages() -> None:
    status = {
        "phase": EVIL,
        "progress": EVIL,
        "steps": {
            "load": {
                "phase": EVIL,
                "jobName": EVIL,
                "message": EVIL,
                "failure": {"ename": EVIL, "evalue": EVIL, "cell": EVIL},
            },
        },
    }
    r = run(**status)
    r["spec"]["pipelineRef"]["name"] = EVIL
    r["status"]["snapshot"]["pipeline"]["steps"] = [{"name": "load", "file": EVIL}]
    detail = views.run_detail(r, views.PodIndex([]), NOW)
    html = pages.run_page(detail, namespaces=EVIL)
    html += pages.runs_page(views.run_rows([r], NOW), namespaces="x")
    message, _ = updates.run_page(updates.RunState(), detail)
    assert message is not None
    # What the page inserts as HTML; phase and title are set as text and attributes, never parsed.
    html += message["summary"] + message["steps"]["load"]["row"]
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert pages.path("runs", "a/b", "c?d") == "/runs/a%2Fb/c%3Fd"


def test_run_page_updates_send_only_what_changed() -> None:
    steps = {"load": {"phase": "Running", "jobName": "j-load", "startTime": "2026-12-06T03:00:00Z"}}
    before = views.run_detail(run(phase="Running", steps=steps), views.PodIndex([]), NOW)
    state = updates.run_state(before)
    assert updates.run_page(state, before)[0] is None
    steps = {**steps, "fit": {"phase": "Running", "jobName": "j-fit"}}
    after = views.run_detail(run(phase="Running", steps=steps), views.PodIndex([]), NOW)
    message, state = updates.run_page(state, after)
    assert set(message["steps"]) == {"fit"}
    change = message["steps"]["fit"]
    assert (change["phase"], change["cls"], change["fill"]) == ("Running", "phase-running", "#d0ebff")
    assert 'id="step-fit"' in change["row"]
    assert "summary" not in message, "nothing in the summary changed"


def test_run_list_updates_add_change_remove_and_reorder() -> None:
    state = updates.ListState()
    message, state = updates.run_list(state, views.run_rows([run("a", phase="Running")], NOW))
    assert set(message["rows"]) == {"team/a"} and message["order"] == ["team/a"]
    assert updates.run_list(state, views.run_rows([run("a", phase="Running")], NOW))[0] is None
    newer = run("b", "2026-12-06T03:05:00Z")
    message, state = updates.run_list(state, views.run_rows([run("a", phase="Succeeded"), newer], NOW))
    assert set(message["rows"]) == {"team/a", "team/b"} and message["order"] == ["team/b", "team/a"]
    message, state = updates.run_list(state, views.run_rows([newer], NOW))
    assert message == {"removed": ["team/a"], "order": ["team/b"], "table": "runs"}


def test_formatting() -> None:
    assert [views.format_duration(s) for s in (None, 3.25, 42, 3599, 7260)] == [
        "",
        "3.2s",
        "42s",
        "59m 59s",
        "2h 01m",
    ]
    assert views.format_time("2026-12-06T03:04:05Z") == "2026-12-06 03:04:05Z"
    assert views.format_time("yesterday") == "" and views.parse_time(None) is None


# --- PipelineJobs -----------------------------------------------------------------------------------------

JOB = {
    "metadata": {"name": "sweep", "namespace": "team", "uid": "u1"},
    "spec": {
        "pipelineRef": {"name": "p"},
        "parameters": {"epochs": 3},
        "matrix": {"lr": [0.1, 0.01], "depth": [2, 10]},
        "include": [{"lr": 1, "note": "extra"}],
        "schedule": "0 3 * * *",
    },
    "status": {
        "lastBatch": "20261206-030000",
        "lastBatchPhase": "Running",
        "activeRuns": 2,
        "batches": [
            {
                "id": "20261206-030000",
                "trigger": "Schedule",
                "scheduledTime": "2026-12-06T03:00:00Z",
                "phase": "Running",
                "runs": 5,
                "counts": {"Running": 2, "Succeeded": 3},
                "combinations": [{"index": 4, "run": "sweep-4", "phase": "Succeeded", "durationSeconds": 65}],
            },
            {
                "id": "20261205-030000",
                "trigger": "Schedule",
                "scheduledTime": "2026-12-05T03:00:00Z",
                "phase": "Succeeded",
                "runs": 5,
            },
        ],
    },
}


def job_run(index: int, batch: str, parameters: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"sweep-{batch[-6:]}-{index}",
            "namespace": "team",
            "labels": {"orchest.io/batch": batch},
            "annotations": {"orchest.io/combination": str(index)},
            "ownerReferences": [{"kind": "PipelineJob", "name": "sweep", "uid": "u1"}],
        },
        "spec": {"pipelineRef": {"name": "p"}, "parameters": {"epochs": 3, **parameters}},
        "status": status,
    }


def test_a_sweep_shows_one_column_per_swept_parameter_and_a_row_per_combination() -> None:
    batch = "20261206-030000"
    runs = [
        job_run(1, batch, {"lr": 0.1, "depth": 10}, phase="Running", startTime="2026-12-06T03:09:00Z"),
        job_run(
            0,
            batch,
            {"lr": 0.1, "depth": 2},
            phase="Succeeded",
            startTime="2026-12-06T03:00:00Z",
            completionTime="2026-12-06T03:02:00Z",
        ),
        job_run(0, "20261205-030000", {"lr": 5}, phase="Failed"),
        {
            **job_run(2, batch, {"lr": 0.01}),
            "metadata": {**job_run(2, batch, {})["metadata"], "ownerReferences": []},
        },
    ]
    detail = job_views.job_detail(JOB, runs, NOW)
    assert detail.swept == ["lr", "depth", "note"]
    assert detail.batch == batch and [b.id for b in detail.batches] == [batch, "20261205-030000"]
    assert [c.index for c in detail.combinations] == [0, 1, 4], "the foreign run is not the job's"
    first, second, recorded = detail.combinations
    assert first.values == [("0.1", 0.1), ("2", 2), ("", "")]
    assert (first.phase, first.duration, second.duration) == ("Succeeded", 120.0, 60.0)
    assert (recorded.run, recorded.phase, recorded.duration) == ("sweep-4", "Succeeded", 65.0)
    older = job_views.job_detail(JOB, runs, NOW, batch="20261205-030000")
    assert [(c.index, c.phase) for c in older.combinations] == [(0, "Failed")]
    row = detail.row
    assert (row.schedule, row.combinations, row.active_runs, row.last_batch_phase) == (
        "0 3 * * *",
        5,
        2,
        "Running",
    )
    html = pages.job_page(detail, "/jobs/team/sweep/events", namespaces="team")
    assert html.count("<button") == 3 + 4, "every column of the combinations table sorts"
    assert 'data-value="0.1"' in html and 'href="/runs/team/sweep-030000-0"' in html


def test_a_job_that_cannot_be_scheduled_says_why() -> None:
    job = {
        **JOB,
        "spec": {"pipelineRef": {"name": "p"}},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "BadSchedule",
                    "message": f"spec.schedule: {EVIL}",
                }
            ]
        },
    }
    row = job_views.job_row(job)
    assert (row.schedule, row.combinations, row.problem) == ("once", 1, f"spec.schedule: {EVIL}")
    html = pages.jobs_page([row], namespaces="team")
    assert "<script>alert" not in html and "not schedulable" in html
    message, _ = updates.job_list(updates.ListState(), [row])
    assert message["table"] == "jobs" and message["order"] == ["team/sweep"]
    assert updates.section("x", "x", "job-body") == (None, "x")
    assert updates.section("x", "y", "job-body") == ({"sections": {"job-body": "y"}}, "y")


def test_pipeline_list_updates_follow_the_session() -> None:
    body = {
        "metadata": {"name": "q", "namespace": "t"},
        "spec": {"steps": STEPS, "session": {"enabled": True}},
    }
    message, state = updates.pipeline_list(updates.ListState(), [views.pipeline_view(body)])
    assert message is not None and message["table"] == "pipelines" and "Starting" in message["rows"]["t/q"]
    body["status"] = {"session": {"phase": "Ready"}, "lastRun": "r1"}
    message, _ = updates.pipeline_list(state, [views.pipeline_view(body)])
    assert message is not None and set(message) == {"rows", "table"}
    assert 'href="/runs/t/r1"' in message["rows"]["t/q"] and "Ready" in message["rows"]["t/q"]


def test_running_rows_do_not_change_with_the_clock() -> None:
    """A running step's duration is counted by the page's script: its row, and so the live updates, only
    change when its state does."""
    steps = {"load": {"phase": "Running", "jobName": "j", "startTime": "2026-12-06T03:00:00Z"}}
    r = run(phase="Running", startTime="2026-12-06T03:00:00Z", steps=steps)
    later = NOW + datetime.timedelta(minutes=5)
    first, second = (updates.run_state(views.run_detail(r, views.PodIndex([]), t)) for t in (NOW, later))
    assert first == second
    assert 'data-since="2026-12-06T03:00:00Z"' in first.steps["load"][1]
    rows = [pages.run_list_row(views.run_rows([r], t)[0]) for t in (NOW, later)]
    assert rows[0] == rows[1]
