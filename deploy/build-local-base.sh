#!/usr/bin/env bash
# Makes a Debian bookworm base image with Python 3.11 without any image registry, for machines that reach Debian's
# mirror but no registry: debootstrap --variant=minbase, python3 (+ venv and ca-certificates, which the official
# python:3.11-slim-bookworm image has too), `docker import`, tagged. Then
#   docker build --build-arg BASE=<tag> ...
# runs every step of the real Dockerfile on it.
#
# Usage: deploy/build-local-base.sh [TAG]     (default shelf-local/python:3.11-bookworm; run as root)
# Env:   DEBIAN_MIRROR (default http://deb.debian.org/debian), DOCKER (default docker)
set -euo pipefail
tag=${1:-shelf-local/python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

[ "$(id -u)" = 0 ] || { echo "build-local-base.sh: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-local-base.sh: apt-get install debootstrap first" >&2; exit 2; }

root=$(mktemp -d /tmp/shelf-base.XXXXXX)
trap 'rm -rf --one-file-system "$root"' EXIT

echo "== debootstrap --variant=minbase bookworm from $mirror =="
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -30 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# What an image needs and a chroot does not: no apt caches, no docs, a UTF-8 locale, a policy that keeps package
# scripts from starting services during later builds.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/*.log \
  "$root"/var/cache/debconf/*-old
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" && chmod +x "$root/usr/sbin/policy-rc.d"
chroot "$root" python3 -c 'import ensurepip, ssl, sqlite3, venv' \
  || { echo "build-local-base.sh: python3 in the base lacks a module" >&2; exit 1; }

echo "== docker import as $tag =="
tar -C "$root" --numeric-owner -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  - "$tag" >/dev/null
"$docker" run --rm "$tag" python3 --version
"$docker" image ls "$tag" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
