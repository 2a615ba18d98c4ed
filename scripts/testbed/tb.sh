#!/bin/bash
# A multi-host Docker Swarm on ONE machine, for the swarm orchestrator's tests and benchmark. Every "host" is a
# network namespace tbhN with its own dockerd (own UTS/mount namespace, data-root, exec-root, socket), plugged into
# a bridge inside a "switch" namespace tbsw. The root namespace sits on the same L2 as 10.99.0.1, so host N is
# 10.99.0.(10+N) from everywhere. No default route: nothing leaves the box.
#
#   tb.sh up N MANAGERS       N hosts, one swarm (tbh1 inits; hosts 2..MANAGERS join as managers, the rest as workers)
#   tb.sh import-image TAR TAG   docker import a rootfs tarball as TAG into every host (parallel)
#   tb.sh stop-host I | start-host I   stop (SIGTERM; its containers stop) / start host I's dockerd
#   tb.sh kill-host I         sudden death of host I: SIGKILL to everything in its namespace and its containers
#   tb.sh partition I | heal I  cut / restore host I's link to the switch (a real network partition)
#   tb.sh docker I ARGS...    the docker CLI against host I
#   tb.sh down                remove everything: services, containers, dockerds, namespaces, cgroups, data
set -eu
TB=${TB:-/var/tmp/pgmesh-testbed/hosts}  # per-host docker data-roots (overlay2 needs ext4/xfs, not tmpfs)
RUN=${RUN:-/run/tb}                      # per-host sockets, pidfiles, exec-roots
NET=10.99.0                              # underlay /24
POOL=10.100.0.0/16                       # swarm overlay address pool, away from the underlay
sock() { echo "unix://$RUN/tbh$1/docker.sock"; }
d() { local i=$1; shift; docker -H "$(sock "$i")" "$@"; }
hosts() { ls -d "$RUN"/tbh* 2>/dev/null | sed 's/.*tbh//' | sort -n; }

start_host() {
  local i=$1 h=tbh$1
  # The exec-root is runtime state (netns handles, containerd's state) that a reboot would clear; a killed dockerd
  # leaves it stale.
  rm -rf "$RUN/$h/exec"
  mkdir -p "$TB/$h/data" "$TB/$h/etc-docker" "$RUN/$h/cg"
  # Each dockerd gets its own tmpfs on /run/docker (below), whose mount point is missing where no system dockerd
  # ever ran; one made here is removed again by `down`.
  [ -d /run/docker ] || { mkdir -p /run/docker && touch "$RUN/made-run-docker"; }
  # Not `ip netns exec`: it remounts /sys, which hides /sys/fs/cgroup ("Devices cgroup isn't mounted"). Instead keep
  # the cgroup mounts and put the netns' own sysfs under them. Per daemon: /run/docker (libnetwork's netns files and
  # setkey sockets have the same names on every node), /etc/docker (key.json = engine id), hostname, cgroup parent.
  # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: swarm tasks use the local image instead of trying a registry first.
  nsenter --net="/run/netns/$h" unshare --uts --mount --propagation private sh -c "
    set -e
    hostname $h
    mount --rbind /sys/fs/cgroup '$RUN/$h/cg'
    mount -t sysfs sysfs /sys
    mount --move '$RUN/$h/cg' /sys/fs/cgroup
    mount --bind '$TB/$h/etc-docker' /etc/docker
    mount -t tmpfs tmpfs /run/docker
    export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
    exec dockerd --data-root '$TB/$h/data' --exec-root '$RUN/$h/exec' --pidfile '$RUN/$h/dockerd.pid' \
      -H '$(sock "$i")' --cgroup-parent /$h --userland-proxy=false --swarm-default-advertise-addr $NET.$((10+i))
  " >> "$TB/$h/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 300); do d "$i" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "dockerd $h did not come up:" >&2; tail -5 "$TB/$h/dockerd.log" >&2; return 1
}

stop_host() {
  local p; p=$(cat "$RUN/tbh$1/dockerd.pid" 2>/dev/null) || return 0
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  echo "dockerd tbh$1 (pid $p) still running" >&2
}

case ${1:-} in
up)
  N=${2:-3}; MANAGERS=${3:-1}
  if ip netns list | grep -qw tbsw; then echo "testbed already up (tb.sh down first)" >&2; exit 1; fi
  mkdir -p "$RUN" "$TB"
  ip netns add tbsw
  ip -n tbsw link set lo up
  ip -n tbsw link add br0 type bridge
  ip -n tbsw link set br0 up
  # The bridge lives in its own namespace: in the root one, Docker's FORWARD DROP + br_netfilter would drop its traffic.
  ip link add tb-root type veth peer name uplink netns tbsw
  ip -n tbsw link set uplink master br0 up
  ip addr add "$NET.1/24" dev tb-root
  ip link set tb-root up
  for i in $(seq 1 "$N"); do
    h=tbh$i
    ip netns add "$h"
    ip -n tbsw link add "$h" type veth peer name eth0 netns "$h"
    ip -n tbsw link set "$h" master br0 up
    ip -n "$h" link set lo up
    ip -n "$h" addr add "$NET.$((10+i))/24" dev eth0
    ip -n "$h" link set eth0 up
  done
  for i in $(seq 1 "$N"); do start_host "$i" & done; wait
  d 1 swarm init --advertise-addr "$NET.11" --default-addr-pool "$POOL" >/dev/null
  WT=$(d 1 swarm join-token -q worker); MT=$(d 1 swarm join-token -q manager)
  for i in $(seq 2 "$N"); do
    if [ "$i" -le "$MANAGERS" ]; then T=$MT; else T=$WT; fi
    d "$i" swarm join --token "$T" --advertise-addr "$NET.$((10+i))" "$NET.11:2377" >/dev/null
  done
  until [ "$(d 1 node ls --format '{{.Status}}' | grep -c Ready)" = "$N" ]; do sleep 0.2; done
  ;;
import-image)
  pids=()
  for i in $(hosts); do d "$i" import \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' "$2" "$3" >/dev/null & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done ;;
stop-host) stop_host "$2" ;;
kill-host)
  # Every process in the host's network namespace (a daemon run there, dockerd, containerd, shims) and in its
  # containers' cgroups (their own network namespaces). Again until none is left: a dying dockerd may still spawn.
  for _ in $(seq 1 20); do
    pids=$( { ip netns pids "tbh$2"; cat /sys/fs/cgroup/pids/"tbh$2"/*/cgroup.procs; } 2>/dev/null | sort -u)
    [ -z "$pids" ] && exit 0
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  echo "processes of tbh$2 survive: $pids" >&2; exit 1 ;;
start-host) start_host "$2" ;;
partition) ip -n tbsw link set "tbh$2" down ;;
heal) ip -n tbsw link set "tbh$2" up ;;
docker) i=$2; shift 2; d "$i" "$@" ;;
down)
  for i in $(hosts); do
    d "$i" service ls -q 2>/dev/null | xargs -r docker -H "$(sock "$i")" service rm >/dev/null 2>&1 || true
    d "$i" ps -aq 2>/dev/null | xargs -r docker -H "$(sock "$i")" rm -f >/dev/null 2>&1 || true
  done
  for i in $(hosts); do stop_host "$i" & done; wait
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^tbh[0-9]+$' || true); do ip netns del "$ns"; done
  ip netns del tbsw 2>/dev/null || true
  ip link del tb-root 2>/dev/null || true
  # Only if still empty: a system dockerd started meanwhile owns it now.
  [ -e "$RUN/made-run-docker" ] && { rmdir /run/docker 2>/dev/null || true; }
  rm -rf "$RUN"
  # Deepest first: a killed host leaves its containers' cgroups behind.
  for c in /sys/fs/cgroup/*/tbh[0-9]*; do [ -d "$c" ] && { find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true; }; done
  rm -rf "$TB"
  true ;;
*) sed -n '2,13p' "$0"; exit 2 ;;
esac
