#!/bin/bash
# Builds the Postgres image the swarm orchestrator runs by default (Debian bookworm + postgresql-15 +
# postgresql-15-pglogical) without any image registry: mmdebstrap makes a root filesystem tarball from the Debian
# mirror, which `docker import` turns into an image. The tarball is cached under $CACHE, keyed on this script and
# the package versions apt would install, so only the first run pays the ~30 s build.
#
#   build-postgres-image.sh              print the path of the (cached or freshly built) rootfs tarball
#   build-postgres-image.sh import HOST  also import it as $TAG into the docker daemon at HOST (unix:///...)
#
# The image has no entrypoint of its own: the orchestrator starts Postgres with its own command (see
# packages/orchestrator-swarm/README.md), so any image with sh, setpriv, initdb and postgres works the same way.
set -euo pipefail
CACHE=${CACHE:-/var/tmp/pgmesh-testbed}
TAG=${TAG:-pgmesh/postgres:15}
MIRROR=${MIRROR:-$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=postgresql-15,postgresql-15-pglogical,iproute2

key=$( { cat "$0"; apt-cache policy postgresql-15 postgresql-15-pglogical 2>/dev/null | grep -E 'Candidate'; } \
  | sha256sum | cut -c1-16)
tarball=$CACHE/postgres-rootfs-$key.tar
mkdir -p "$CACHE"
if [ ! -s "$tarball" ]; then
  rm -f "$CACHE"/postgres-rootfs-*.tar "$CACHE"/postgres-rootfs-*.tmp
  # --format=tar: mmdebstrap picks the format from the file name, and *.tmp would silently become a directory.
  mmdebstrap --quiet --variant=minbase --format=tar --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/bitcode/*' \
    --dpkgopt='path-exclude=/usr/lib/postgresql/15/lib/llvmjit*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libz3*' \
    --essential-hook='mkdir -p "$1/etc/postgresql-common" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.conf"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tarball.tmp" "$MIRROR" >&2
  mv "$tarball.tmp" "$tarball"
fi
if [ "${1:-}" = import ]; then
  # docker 20.10's import rejects STOPSIGNAL and HEALTHCHECK changes; the orchestrator sets both on the service.
  docker -H "$2" import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'EXPOSE 5432' --change 'CMD ["postgres", "--version"]' \
    "$tarball" "$TAG" >/dev/null
fi
echo "$tarball"
