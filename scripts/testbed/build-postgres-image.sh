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
# Variants (each cached under its own name), for the two tags of the version manifest's testbed images
# (packages/model/src/manifest.ts) that test/swarm-upgrade.test.ts upgrades between:
#   SUITES=point            bookworm and bookworm-updates only: the final point release's minor (15.18 since 12.15,
#                           July 2026; bookworm's LTS updates go to bookworm-security), without security updates
#   SUITES=security         (default) also bookworm-security: Debian's newest minor (15.20 in November 2026)
#   EXTRA_PACKAGES=a,b      more Debian packages in the image (the second tag is a rebuild with procps)
#   EXPECT_MINOR=15.18      refuse (exit 1) when the postgresql-15 the build installed is another minor, so a tag
#                           named after a minor never holds another one
#   build-postgres-image.sh minor   print the postgresql-15 major.minor of the (cached or built) tarball
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
SUITES=${SUITES:-security}
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
case "$SUITES" in
  security) SOURCES=("deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY_MIRROR bookworm-security main") ;;
  point) SOURCES=("deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main") ;;
  *) echo "build-postgres-image.sh: SUITES must be security or point, not $SUITES" >&2; exit 2 ;;
esac
PACKAGES=postgresql-15,postgresql-15-pglogical,pgbackrest,iproute2${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
# The default variant keeps its old name; others are named after what differs.
variant=$SUITES${EXTRA_PACKAGES:+-${EXTRA_PACKAGES//,/-}}
[ "$variant" = security ] && prefix=postgres-rootfs- || prefix=postgres-rootfs-$variant-

key=$( { cat "$0"; printf '%s\n' "${SOURCES[@]}" "$PACKAGES"
  apt-cache policy postgresql-15 postgresql-15-pglogical pgbackrest 2>/dev/null | grep -E 'Candidate'; } | sha256sum | cut -c1-16)
tarball=$CACHE/$prefix$key.tar
mkdir -p "$CACHE"
if [ ! -s "$tarball" ]; then
  # Only this variant's older builds: the other tag's tarball stays cached.
  find "$CACHE" -maxdepth 1 -regextype posix-extended -regex "$CACHE/$prefix[0-9a-f]{16}\.(tar|tmp)" -delete
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
# postgresql-15's version as dpkg installed it in the image, e.g. 15.20-0+deb12u1 -> 15.20. awk reads to the end:
# exiting early would kill tar with SIGPIPE, which pipefail turns into a silent failure of the whole script.
minor=$(tar -xOf "$tarball" ./var/lib/dpkg/status | awk '/^Package: /{p = ($2 == "postgresql-15")} p && /^Version: / && !v {v = $2} END {print v}' | sed -E 's/^([0-9]+\.[0-9]+).*/\1/')
if [ -n "${EXPECT_MINOR:-}" ] && [ "$minor" != "$EXPECT_MINOR" ]; then
  echo "build-postgres-image.sh: the $variant build has postgresql-15 $minor, not $EXPECT_MINOR: a tag named $EXPECT_MINOR would lie (update the manifest's testbed images)" >&2
  exit 1
fi
if [ "${1:-}" = minor ]; then echo "$minor"; exit 0; fi
if [ "${1:-}" = import ]; then
  # docker 20.10's import rejects STOPSIGNAL and HEALTHCHECK changes; the orchestrator sets both on the service.
  docker -H "$2" import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'EXPOSE 5432' --change 'CMD ["postgres", "--version"]' \
    "$tarball" "$TAG" >/dev/null
fi
echo "$tarball"
