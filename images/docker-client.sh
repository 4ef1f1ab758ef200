#!/usr/bin/env bash
# Print the path of a docker client that builds with BuildKit: $DOCKER if set, else the first of `docker`
# on PATH and Debian docker.io's /usr/bin/docker that has the buildx plugin or, being older than 23, has
# BuildKit built in (DOCKER_BUILDKIT=1). A newer client without buildx cannot build with BuildKit at all.
set -euo pipefail
if [ -n "${DOCKER:-}" ]; then
    echo "$DOCKER"
    exit 0
fi
for candidate in "$(command -v docker || true)" /usr/bin/docker; do
    [ -x "$candidate" ] || continue
    if "$candidate" buildx version >/dev/null 2>&1; then
        echo "$candidate"
        exit 0
    fi
    version=$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [ -n "$version" ] && [ "${version%%.*}" -lt 23 ]; then
        echo "$candidate"
        exit 0
    fi
done
echo "no docker client that builds with BuildKit (install docker.io, or the buildx plugin)" >&2
exit 1
