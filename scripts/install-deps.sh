#!/bin/sh
# Installs the system packages pgmesh runs on (PostgreSQL 15 and pglogical) on Debian 12, and what the tests need:
# iproute2 (hosts in network namespaces), Docker (docker.io; the swarm testbed starts its own dockerds in network
# namespaces) and mmdebstrap (builds the Postgres image from Debian packages, no image registry needed).
# Idempotent: installs only what is missing, and refreshes the package lists only when apt does not
# know a missing package yet (a fresh machine or container has empty lists).
set -eu

PACKAGES="postgresql-15 postgresql-15-pglogical postgresql-contrib docker.io mmdebstrap iproute2"

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get needs it)" >&2
  exit 1
fi

missing=""
for package in $PACKAGES; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing="$missing $package"
done

if [ -z "$missing" ]; then
  echo "install-deps.sh: already installed:$(printf ' %s' $PACKAGES)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
for package in $missing; do
  if ! apt-cache show "$package" >/dev/null 2>&1; then
    apt-get update -q
    break
  fi
done

# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $missing
echo "install-deps.sh: installed:$missing"
