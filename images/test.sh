#!/usr/bin/env bash
# `make test-images`: build the images and run tests/images against them. Starts a Docker engine when
# none runs (images/engine.sh); when no engine can run here, the tests are skipped with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
engine=$(images/engine.sh)
status=$?
if [ $status -eq 3 ]; then
    echo "test-images: skipped: $engine" >&2
    ORCHEST_IMAGES_UNAVAILABLE="$engine" exec "$PYTHON" -m pytest -q -rs tests/images
fi
[ $status -eq 0 ] || exit $status
export DOCKER=$engine
images/build.sh || exit 1
ORCHEST_IMAGES=1 exec "$PYTHON" -m pytest -q -rs tests/images
