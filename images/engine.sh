#!/usr/bin/env bash
# Make sure a Docker engine runs, and print the docker client to use with it (images/docker-client.sh).
# When none runs and this machine can run one (root, apt-get), install Debian's docker.io and start
# dockerd without iptables or a bridge, so it needs no network set-up; builds and containers then use
# --network host (or none). It stays running; its log is in ${TMPDIR:-/tmp}/orchest-dockerd.log.
# Exit 3, with the reason on stdout, when no engine can run here.
set -uo pipefail
cd "$(dirname "$0")/.."

unavailable() {
    echo "$*"
    exit 3
}

client=$(images/docker-client.sh 2>/dev/null) || client=
if [ -n "$client" ] && "$client" info >/dev/null 2>&1; then
    echo "$client"
    exit 0
fi
if [ -z "$client" ] || ! command -v dockerd >/dev/null; then
    [ "$(id -u)" = 0 ] || unavailable "no Docker engine runs, and installing one needs root"
    command -v apt-get >/dev/null || unavailable "no Docker engine runs, and there is no apt-get to install docker.io"
    echo "engine: installing docker.io" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap; } \
        >"${TMPDIR:-/tmp}/orchest-apt.log" 2>&1 \
        || unavailable "apt-get could not install docker.io: $(tail -n 3 "${TMPDIR:-/tmp}/orchest-apt.log")"
    client=$(images/docker-client.sh) || unavailable "docker.io installed no client that builds with BuildKit"
fi
[ "$(id -u)" = 0 ] || unavailable "no Docker engine runs, and starting dockerd needs root"
log=${TMPDIR:-/tmp}/orchest-dockerd.log
echo "engine: starting dockerd (log: $log)" >&2
setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none >"$log" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 60); do
    if "$client" info >/dev/null 2>&1; then
        echo "$client"
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
unavailable "dockerd cannot run here: $(tail -n 3 "$log" | tr '\n' ' ')"
