#!/bin/bash
# Builds the Postgres image the swarm orchestrator runs by default (Debian bookworm + postgresql-15 +
# postgresql-15-pglogical + pgbackrest) without any image registry: mmdebstrap makes a root filesystem tarball from the Debian
# mirror, which `docker import` turns into an image. The suites are bookworm, bookworm-updates and bookworm-security,
# as on an installed machine, so the image has the newest minor Debian ships (the same one scripts/install-deps.sh
# installs on the host). The tarball is cached under $CACHE, keyed on this script, the mirrors and the versions apt
# would install (apt-cache policy's candidates, which come from the security suite as well when the host lists it,
# and scripts/install-deps.sh refreshes the lists), so only the first run after a Debian update pays the ~40 s build.
#
#   build-postgres-image.sh              print the path of the (cached or freshly built) rootfs tarball
#   build-postgres-image.sh import HOST  also import it as $TAG into the docker daemon at HOST (unix:///...)
#
# The image has no entrypoint of its own: the orchestrator starts Postgres with its own command (see
# packages/orchestrator-swarm/README.md), so any image with sh, setpriv, initdb and postgres works the same way.
set -euo pipefail
CACHE=${CACHE:-/var/tmp/pgmesh-testbed}
TAG=${TAG:-pgmesh/postgres:15}
# The machine's own mirrors (deb822 URIs lines: the first for Debian, the one ending in -security for its security
# archive), else Debian's.
uris() { sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $1}'; }
MIRROR=${MIRROR:-$(uris | grep -v -- '-security/*$' | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(uris | grep -- '-security/*$' | head -1)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SOURCES=("deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main")
PACKAGES=postgresql-15,postgresql-15-pglogical,pgbackrest,iproute2

key=$( { cat "$0"; printf '%s\n' "${SOURCES[@]}"
  apt-cache policy postgresql-15 postgresql-15-pglogical pgbackrest 2>/dev/null | grep -E 'Candidate'; } | sha256sum | cut -c1-16)
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
    --customize-hook='chroot "$1" dpkg-query -W -f="build-postgres-image.sh: \${Package} \${Version}\n" postgresql-15 postgresql-15-pglogical pgbackrest >&2' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm "$tarball.tmp" "${SOURCES[@]}" >&2
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
