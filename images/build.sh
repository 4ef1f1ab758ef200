#!/usr/bin/env bash
# Build orchest's images with BuildKit: images/build.sh [IMAGE...] (default: all three). `make images`
# runs it. Environment: REGISTRY and TAG name the images ($REGISTRY/orchest-<image>:$TAG); BASE_IMAGE is
# the Python base (default: the Dockerfiles' ARG BASE_IMAGE, the official image). When it is neither present
# nor pullable, a stand-in is built from Debian packages (images/stand-in-base.sh) and used instead.
# DOCKER picks the client (default: images/docker-client.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-$(images/docker-client.sh)}
REGISTRY=${REGISTRY:-ghcr.io/orchest-operator}
TAG=${TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)}
BASE_IMAGE=${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' images/operator/Dockerfile)}
if [ $# -eq 0 ]; then
    set -- operator step-runner jupyter-server
fi

base=$BASE_IMAGE
if ! "$DOCKER" image inspect "$base" >/dev/null 2>&1 && ! pulled=$("$DOCKER" pull --quiet "$base" 2>&1); then
    echo "build: cannot pull $base (${pulled##*: }); using a stand-in made from Debian packages" >&2
    base=$(DOCKER=$DOCKER images/stand-in-base.sh)
fi
echo "build: base $base" >&2
# The builds run at once (mostly downloads); each one's log is shown only when it fails.
logs=${TMPDIR:-/tmp}
pids=()
for image in "$@"; do
    echo "build: $REGISTRY/orchest-$image:$TAG" >&2
    # --network host: an engine started without a bridge (dockerd --bridge=none) has no other network.
    DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress plain \
        --build-arg BASE_IMAGE="$base" \
        --file "images/$image/Dockerfile" --tag "$REGISTRY/orchest-$image:$TAG" . \
        >"$logs/orchest-build-$image.log" 2>&1 &
    pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
    image=${*:i+1:1}
    if ! wait "${pids[$i]}"; then
        tail -n 60 "$logs/orchest-build-$image.log" >&2
        echo "build: $image failed (log: $logs/orchest-build-$image.log)" >&2
        failed=1
    fi
done
exit $failed
