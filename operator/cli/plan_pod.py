"""``python -m orchest_operator.cli.plan_pod``: what the short pod of ``orchest plan --cluster`` runs.

It reads the pipeline, the run's options and the image steps get by default from ``$ORCHEST_PLAN``, plans
in the current directory (the pipeline's volume) and prints the plan as JSON on stdout, where the CLI
reads it back from the pod's log. It never runs a step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from orchest_operator.cache.index import CacheError
from orchest_operator.cache.plan import plan
from orchest_operator.dag import Dag, PlanError
from orchest_operator.models import PipelineRunSpec, PipelineSpec

ENV_PLAN = "ORCHEST_PLAN"


def main() -> int:
    try:
        data = json.loads(os.environ.get(ENV_PLAN) or "")
        spec = PipelineSpec.model_validate(data["spec"])
        request = PipelineRunSpec.model_validate(data["request"])
        selected = Dag.of(spec).select(request.selection.mode, request.selection.steps)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
