"""The server-side filters and the diff base the operator gives kopf."""

from __future__ import annotations

import kopf

from orchest_operator import watching
from orchest_operator.models import API_VERSION
from tests.support.selectors import field_selector, label_selector


def _resource(group: str, version: str, plural: str, kind: str) -> kopf.Resource:
    return kopf.Resource(group, version, plural, kind=kind, namespaced=True)


JOBS = _resource("batch", "v1", "jobs", "Job")
PODS = _resource("", "v1", "pods", "Pod")
DEPLOYMENTS = _resource("apps", "v1", "deployments", "Deployment")
RUNS = _resource("orchest.io", "v1alpha1", "pipelineruns", "PipelineRun")


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    watching.configure(settings)
    return settings


def _pod(phase: str, labels: dict[str, str]) -> dict:
    return {"metadata": {"name": "p", "labels": labels}, "status": {"phase": phase}}


def test_jobs_and_pods_are_filtered_by_the_run_label_on_the_server() -> None:
    selectors = _configured().watching.label_selectors
    assert selectors.collect(JOBS) == ["orchest.io/pipeline-run"]
    assert selectors.collect(PODS) == ["orchest.io/pipeline-run"]
    assert selectors.collect(DEPLOYMENTS) == ["app.kubernetes.io/managed-by=orchest-operator"]
    assert selectors.collect(RUNS) == []  # every run is the operator's business


def test_only_finished_pods_of_runs_are_watched() -> None:
    settings = _configured()
    (fields,) = settings.watching.field_selectors.collect(PODS)
    assert settings.watching.field_selectors.collect(JOBS) == []
    (labels,) = settings.watching.label_selectors.collect(PODS)
    ours = {"orchest.io/pipeline-run": "r1"}

    def sent(pod: dict) -> bool:  # as the API server evaluates the two selectors of the watch
        return label_selector(labels)(pod) and field_selector(fields)(pod)

    phases = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
    assert [phase for phase in phases if sent(_pod(phase, ours))] == ["Succeeded", "Failed", "Unknown"]
    assert not sent(_pod("Succeeded", {"app": "someone-else"}))


def _pipeline(spec: dict, **metadata: object) -> kopf.Body:
    return kopf.Body(
        {"apiVersion": API_VERSION, "kind": "Pipeline", "metadata": {"name": "p", **metadata}, "spec": spec}
    )


def test_the_diff_base_is_built_only_for_kinds_with_change_handlers() -> None:
    storage = _configured().persistence.diffbase_storage
    run = kopf.Body(
        {
            "apiVersion": API_VERSION,
            "kind": "PipelineRun",
            "metadata": {"name": "r"},
            "spec": {"pipelineRef": {"name": "p"}},
            "status": {"steps": {f"s{i}": {"phase": "Running"} for i in range(1000)}},
        }
    )
    assert storage.build(body=run) == {}
    # Written and read under the operator's own annotation prefix, as before.
    assert isinstance(storage, kopf.AnnotationsDiffBaseStorage)
    assert storage.prefix == "orchest.io"


def test_a_pipeline_diff_base_holds_only_what_its_session_is_built_from() -> None:
    storage = _configured().persistence.diffbase_storage
    session = {"enabled": True, "kernels": [{"name": "python"}]}
    steps = [{"name": f"s{i}", "file": "a.py", "parameters": {"x": "y" * 300}} for i in range(1000)]
    spec = {"image": "img", "volume": {"claimName": "c"}, "session": session, "steps": steps}
    built = storage.build(body=_pipeline(spec, labels={"a": "b"}))
    assert built == {"spec": {"image": "img", "volume": {"claimName": "c"}, "session": session}}
    # The steps stay out of the annotation: 1000 of them would pass the 256 KiB that all of an
    # object's annotations may hold.
    patch = kopf.Patch()
    storage.store(body=_pipeline(spec), patch=patch, essence=built)
    annotations = dict(patch["metadata"]["annotations"])
    assert len(annotations["orchest.io/last-handled-configuration"]) < 200
    assert storage.fetch(body=_pipeline(spec, annotations=annotations)) == built
    # A copy: what kopf keeps does not change with the body it came from.
    session["enabled"] = False
    assert built["spec"]["session"]["enabled"] is True


def test_a_step_edit_is_no_session_change_and_a_session_edit_is() -> None:
    storage = _configured().persistence.diffbase_storage
    base = {"volume": {"claimName": "c"}, "steps": [{"name": "a", "file": "a.py"}]}
    before = storage.build(body=_pipeline(base))
    more_steps = {**base, "steps": [*base["steps"], {"name": "b", "file": "b.py"}]}
    assert storage.build(body=_pipeline(more_steps)) == before
    for edit in ({"image": "other"}, {"volume": {"claimName": "d"}}, {"session": {"enabled": True}}):
        assert storage.build(body=_pipeline({**base, **edit})) != before, edit


def test_a_handler_that_names_a_field_gets_kopfs_whole_essence() -> None:
    storage = _configured().persistence.diffbase_storage
    body = {**_pipeline({"steps": [{"name": "a", "file": "a.py"}]}), "status": {"x": 1, "y": 2}}
    built = storage.build(body=kopf.Body(body), extra_fields=[("status", "x")])
    assert built["status"] == {"x": 1}
    assert built["spec"]["steps"] == [{"name": "a", "file": "a.py"}]
