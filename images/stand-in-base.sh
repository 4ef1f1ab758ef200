#!/usr/bin/env bash
# Build a local stand-in for the official python:3.11-slim-bookworm image from Debian packages, for
# machines that cannot reach its registry, and print its name. Needs root and debootstrap (installed with
# apt-get when missing). The stand-in trusts this machine's extra CA certificates (the local directory of
# update-ca-certificates), so that pip works behind a proxy that re-signs HTTPS.
#
# Its Python is Debian's 3.11 in /usr/bin (the official image has its own build in /usr/local/bin), pip
# installs into /usr/local as in the official image (Debian's EXTERNALLY-MANAGED marker is removed).
# Built once per content of this script and of the extra CA certificates; Debian packages are cached in
# ~/.cache/orchest/debootstrap. Set DEBIAN_MIRROR to use another mirror than debootstrap's default.
set -euo pipefail
DOCKER=${DOCKER:-docker}
SUITE=bookworm
PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd
CA_DIR=/usr/local/share/ca-certificates
REPOSITORY=orchest.local/python-stand-in

certificates() { find "$CA_DIR" -type f -name '*.crt' 2>/dev/null | sort; }
digest=$({ cat "$0"; certificates | xargs -r cat; } | sha256sum | cut -c1-12)
name="$REPOSITORY:3.11-slim-$SUITE-$digest"
if "$DOCKER" image inspect "$name" >/dev/null 2>&1; then
    echo "$name"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "stand-in: installing debootstrap" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi
root=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$root" "$log"' EXIT
cache=${XDG_CACHE_HOME:-$HOME/.cache}/orchest/debootstrap
mkdir -p "$cache"
echo "stand-in: debootstrap $SUITE with $PACKAGES" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$cache" "$SUITE" "$root" \
    ${DEBIAN_MIRROR:+"$DEBIAN_MIRROR"} >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    exit 1
fi

certificates | while read -r file; do
    install -D -m 0644 "$file" "$root$CA_DIR/${file#"$CA_DIR"/}"
done
chroot "$root" update-ca-certificates >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# What the official slim image leaves out too: package lists, caches, documentation.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log

tar --numeric-owner -C "$root" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "stand-in for python:3.11-slim-$SUITE, made by images/stand-in-base.sh" \
    - "$name" >/dev/null
"$DOCKER" tag "$name" "$REPOSITORY:3.11-slim-$SUITE"
# Untag the stand-ins of earlier versions of this script (their layers stay while images use them).
"$DOCKER" images --format '{{.Repository}}:{{.Tag}}' "$REPOSITORY" | grep -v -e "^$name\$" -e ":3.11-slim-$SUITE\$" \
    | xargs -r "$DOCKER" rmi >/dev/null 2>&1 || true
echo "$name"
