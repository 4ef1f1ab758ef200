"""``python -m orchest_operator.cli.plan_pod``: what the short pod of ``orchest plan --cluster`` runs.

It reads the pipeline, the run's options and the image steps get by default from ``$ORCHEST_PLAN``, plans
in the current directory (the pipeline's volume) and prints the plan as JSON on stdout, where the CLI
reads it back from the pod's log. With ``--termination-message`` (the operator's planning Job of a run) it
also leaves the steps found in the cache in the termination log (``cache.runplan``). It never runs a step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchest_operator.cache.index import CacheError
from orchest_operator.cache.plan import plan
from orchest_operator.cache.runplan import encode
from orchest_operator.cli.step import DEFAULT_TERMINATION_LOG, ENV_TERMINATION_LOG
from orchest_operator.dag import Dag, PlanError
from orchest_operator.models import PipelineRunSpec, PipelineSpec

ENV_PLAN = "ORCHEST_PLAN"


def main(argv: list[str] | None = None) -> int:
    termination = "--termination-message" in (sys.argv[1:] if argv is None else argv)
    try:
        data = json.loads(os.environ.get(ENV_PLAN) or "")
        spec = PipelineSpec.model_validate(data["spec"])
        request = PipelineRunSpec.model_validate(data["request"])
        selected = [str(n) for n in data.get("selected") or ()] or Dag.of(spec).select(
            request.selection.mode, request.selection.steps
        )
        rows = plan(
            Path.cwd(),
            spec,
            request.pipeline_ref.name,
            selected,
            parameters=request.parameters,
            use_cache=request.cache,
            default_image=str(data.get("defaultImage") or ""),
        )
    except (ValueError, KeyError, TypeError, PlanError, CacheError) as err:
        print(json.dumps({"error": str(err)}))
        return 1
    print(json.dumps({"steps": [row.wire() for row in rows]}))
    if termination:
        cached = {row.step: row.cached_from for row in rows if row.cached and row.cached_from}
        path = Path(os.environ.get(ENV_TERMINATION_LOG, DEFAULT_TERMINATION_LOG))
        path.write_text(encode(selected, cached), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
