#!/bin/sh
# Installs the system packages pgmesh runs on (PostgreSQL 15, pglogical and pgBackRest) on Debian 12, and what the tests need:
# iproute2 (hosts in network namespaces), procps (pgrep/pkill; minimal images lack it), chromium (the web console's
# browser tests drive it with playwright-core), Docker (docker.io; the swarm
# testbed starts its own dockerds in network namespaces) and mmdebstrap (builds the Postgres image from Debian
# packages, no image registry needed).
#
# PostgreSQL is always brought to the newest minor Debian ships (bookworm-security included): users who install it
# today get that one, so the tests must run on it too (15.19 added `output_plugin_libraries`, which broke every
# logical-replication output plugin not listed in it). Set PGMESH_SKIP_APT_UPDATE=1 to use the package lists as they
# are (offline machines); otherwise the lists are refreshed once per run.
# `install-deps.sh bench` adds the peers the benchmarks compare with: Patroni and etcd (bench:patroni). Debian's
# etcd package starts its service where systemd runs; the bench runs its own etcd and Patroni on other ports.
set -eu

PACKAGES="postgresql-15 postgresql-client-15 postgresql-15-pglogical postgresql-contrib pgbackrest docker.io mmdebstrap iproute2
  procps chromium"
if [ "${1:-}" = bench ]; then
  PACKAGES="$PACKAGES patroni etcd-server"
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get needs it)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if [ "${PGMESH_SKIP_APT_UPDATE:-}" != 1 ]; then
  apt-get update -q >/dev/null
fi

# `apt-get install` of an installed package upgrades it to the candidate (the newest minor) and is a no-op when it
# is current; --no-install-recommends keeps Debian's suggested extras out.
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q --no-install-recommends $PACKAGES >/dev/null
echo "install-deps.sh: $(dpkg-query -W -f='${Package} ${Version}\n' postgresql-15 postgresql-15-pglogical | tr '\n' ' ')"
