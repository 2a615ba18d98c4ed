import { createHash } from 'node:crypto'
import type Docker from 'dockerode'

/** Where things are inside a Postgres container; the host side is `<dataDir>/instances/<instance id>/…`. */
export const CONTAINER_PATHS = {
  data: '/var/lib/pgmesh/data',
  pgdata: '/var/lib/pgmesh/data/pgdata',
  log: '/var/lib/pgmesh/data/log',
  configs: '/etc/pgmesh',
  socket: '/var/run/postgresql',
  /** The superuser's libpq password file (PGPASSFILE), in the data mount: written by the orchestrator, 0600. */
  passfile: '/var/lib/pgmesh/data/pgpass',
  /** pgBackRest's config file (0600: it may hold repository keys) and lock directory, in the data mount. */
  pgbackrestConf: '/var/lib/pgmesh/data/pgbackrest.conf',
  pgbackrestLock: '/var/lib/pgmesh/data/pgbackrest-lock',
  /** A restore's own config (the source's repository); recovery reads WAL through it until the server is adopted. */
  pgbackrestRestoreConf: '/var/lib/pgmesh/data/pgbackrest.restore.conf'
} as const

/** The names of those in the instance's data directory (host side). */
export const PGBACKREST_CONF_NAME = 'pgbackrest.conf'
export const PGBACKREST_LOCK_NAME = 'pgbackrest-lock'
export const PGBACKREST_RESTORE_CONF_NAME = 'pgbackrest.restore.conf'

/** The password file's name in the instance's data directory (host side). */
export const PASSFILE_NAME = 'pgpass'

/** As root: the image's binaries on PATH, and the bind-mounted directories handed to the image's `postgres` user. */
const PREPARE = `set -eu
export PATH="/usr/lib/postgresql/$PGMESH_MAJOR/bin:$PATH"
AS="setpriv --reuid=postgres --regid=postgres --init-groups"
mkdir -p ${CONTAINER_PATHS.log} ${CONTAINER_PATHS.socket}
chown postgres:postgres ${CONTAINER_PATHS.data} ${CONTAINER_PATHS.log} ${CONTAINER_PATHS.socket}
chmod 0700 ${CONTAINER_PATHS.data} ${CONTAINER_PATHS.socket}
for file in ${CONTAINER_PATHS.passfile} ${CONTAINER_PATHS.pgbackrestConf} ${CONTAINER_PATHS.pgbackrestRestoreConf}; do
  if [ -f "$file" ]; then chown postgres:postgres "$file"; chmod 0600 "$file"; fi
done
if [ -d ${CONTAINER_PATHS.pgbackrestLock} ]; then chown postgres:postgres ${CONTAINER_PATHS.pgbackrestLock}; fi
`

/**
 * The container's command: the orchestrator starts Postgres itself, so any image with `sh`, `setpriv` (util-linux)
 * and the Postgres binaries works, whatever its own entrypoint does. As root it prepares the bind-mounted
 * directories for the image's `postgres` user, runs initdb once (superuser `pgmesh`; local trust for the control
 * plane's socket, scram over TCP), and execs the postmaster with the orchestrator's config files, so Postgres is the
 * container's main process (stop signal SIGINT = fast shutdown). A replica's data directory was cloned before its
 * first container starts (CLONE_SCRIPT), so initdb does not run for it.
 *
 * pglogical's initial copy of a joining node connects to that node's own DSN (the host address and published
 * port). From inside the container that address is only reachable through the host, and Docker drops such
 * hairpin traffic on docker_gwbridge (inter-container traffic is off there), so the host's addresses are added to
 * the container's loopback (hence NET_ADMIN) and Postgres listens on the published port inside too.
 */
export const START_SCRIPT = `${PREPARE}for address in $PGMESH_LOCAL_ADDRESSES; do
  ip address add "$address" dev lo 2>/dev/null || ip address show dev lo | grep -q " $address " ||
    echo "pgmesh: could not add $address to lo: a joining node cannot copy its data" >&2
done
if [ ! -s ${CONTAINER_PATHS.pgdata}/PG_VERSION ]; then
  rm -rf ${CONTAINER_PATHS.pgdata}
  $AS initdb -D ${CONTAINER_PATHS.pgdata} -U pgmesh -E UTF8 --locale=C.UTF-8 --auth-local=trust \\
    --auth-host=scram-sha-256 --data-checksums --no-instructions >/dev/null
fi
exec $AS postgres -D ${CONTAINER_PATHS.pgdata} -c config_file=${CONTAINER_PATHS.configs}/postgresql.conf
`

/**
 * A replica's clone, run once in a one-shot container before the instance's own container exists: pg_basebackup
 * with the arguments it is given (`sh -c CLONE_SCRIPT pgmesh-clone ARGS…`) into an emptied pgdata, then
 * standby.signal. The standby settings are in the orchestrator's config file, not written by `-R`.
 */
export const CLONE_SCRIPT = `${PREPARE}rm -rf ${CONTAINER_PATHS.pgdata}
$AS pg_basebackup "$@"
$AS touch ${CONTAINER_PATHS.pgdata}/standby.signal
`

/**
 * A restore, run in a one-shot container before the instance's own container starts (again):
 * `pgbackrest restore` with the arguments it is given (`sh -c RESTORE_SCRIPT pgmesh-restore ARGS…`) into an emptied
 * pgdata, as the image's postgres user.
 */
export const RESTORE_SCRIPT = `${PREPARE}mkdir -p ${CONTAINER_PATHS.pgbackrestLock}
chown postgres:postgres ${CONTAINER_PATHS.pgbackrestLock}
rm -rf ${CONTAINER_PATHS.pgdata}
mkdir -m 0700 ${CONTAINER_PATHS.pgdata}
chown postgres:postgres ${CONTAINER_PATHS.pgdata}
exec $AS /usr/bin/pgbackrest "$@"
`

export interface RestoreInput {
  instanceId: string
  databaseId: string
  hostId: string
  image: string
  postgresMajor: number
  /** Host-side data directory, bind-mounted at CONTAINER_PATHS.data. */
  dataDir: string
  /** The instance's extra_volumes: where a posix repository is. */
  extraVolumes: Array<{ hostPath: string, destinationPath: string }>
  /** `pgbackrest restore`'s arguments (restoreArgs), with the config inside the container. */
  restoreArgs: string[]
}

export function restoreContainerName (instanceId: string): string {
  return `pgmesh-restore-${instanceId}`
}

/**
 * The one-shot restore container: the instance's own image (this host may have no pgBackRest), its data mount and
 * extra volumes, the host's network (cloud repositories), a TTY so that its output comes back as plain text. Its
 * labels are not an instance's, so status and events never take it for one.
 */
export function restoreContainerSpec (input: RestoreInput): Docker.ContainerCreateOptions {
  return oneShotContainerSpec({
    name: restoreContainerName(input.instanceId), image: input.image, script: RESTORE_SCRIPT, scriptName: 'pgmesh-restore', args: input.restoreArgs,
    env: [`PGMESH_MAJOR=${input.postgresMajor}`, 'LANG=C.UTF-8'],
    labels: { [LABELS.hostId]: input.hostId, [LABELS.databaseId]: input.databaseId, [LABELS.restoreOf]: input.instanceId, [LABELS.component]: 'restore' },
    mounts: [
      { Type: 'bind', Source: input.dataDir, Target: CONTAINER_PATHS.data },
      ...input.extraVolumes.map(v => ({ Type: 'bind' as const, Source: v.hostPath, Target: v.destinationPath }))
    ]
  })
}

/**
 * A one-shot container of an instance's image running a script of ours as root (`sh -c SCRIPT NAME ARGS…`), on the
 * host's network, with a TTY so that its output comes back as plain text.
 */
function oneShotContainerSpec (input: {
  name: string, image: string, script: string, scriptName: string, args: string[], env: string[], labels: Record<string, string>,
  mounts: Array<{ Type: 'bind', Source: string, Target: string }>
}): Docker.ContainerCreateOptions {
  return {
    name: input.name,
    Image: input.image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [input.script, input.scriptName, ...input.args],
    Env: input.env,
    User: 'root',
    Tty: true,
    Labels: input.labels,
    HostConfig: { NetworkMode: 'host', Mounts: input.mounts }
  }
}

export interface CloneInput {
  instanceId: string
  databaseId: string
  hostId: string
  image: string
  postgresMajor: number
  /** Host-side data directory, bind-mounted at CONTAINER_PATHS.data. */
  dataDir: string
  /** pg_basebackup's arguments (basebackupArgs), with `-D` inside the container. */
  basebackupArgs: string[]
}

export function cloneContainerName (instanceId: string): string {
  return `pgmesh-clone-${instanceId}`
}

/**
 * The one-shot clone container: on the host's network, so that the primary sees this host's address (a peer the
 * primary's pg_hba admits, by password) without NAT, and so that it needs no overlay; a TTY so that its output comes
 * back as plain text.
 */
export function cloneContainerSpec (input: CloneInput): Docker.ContainerCreateOptions {
  return oneShotContainerSpec({
    name: cloneContainerName(input.instanceId), image: input.image, script: CLONE_SCRIPT, scriptName: 'pgmesh-clone', args: input.basebackupArgs,
    // PGPASSFILE is a path: pg_basebackup authenticates as the superuser with no password in its arguments.
    env: [`PGMESH_MAJOR=${input.postgresMajor}`, 'PGCONNECT_TIMEOUT=10', `PGPASSFILE=${CONTAINER_PATHS.passfile}`],
    labels: { [LABELS.hostId]: input.hostId, [LABELS.databaseId]: input.databaseId, [LABELS.cloneOf]: input.instanceId, [LABELS.component]: 'clone' },
    mounts: [{ Type: 'bind', Source: input.dataDir, Target: CONTAINER_PATHS.data }]
  })
}

export interface DescribeConfigInput {
  hostId: string
  image: string
  /** The image's content id (`sha256:…`): the name and label say which image the answer is for. */
  imageId: string
  postgresMajor: number
}

export function describeConfigContainerName (imageId: string, postgresMajor: number): string {
  return `pgmesh-describe-config-${imageId.replace(/^sha256:/, '').slice(0, 12)}-${postgresMajor}`
}

/**
 * A one-shot container that prints the configuration parameters the image's server knows
 * (`postgres --describe-config`, allowed as root): no network, no mounts, no TTY (tabs and newlines arrive as
 * written, in Docker's multiplexed log stream).
 */
export function describeConfigContainerSpec (input: DescribeConfigInput): Docker.ContainerCreateOptions {
  return {
    name: describeConfigContainerName(input.imageId, input.postgresMajor),
    Image: input.image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: ['PATH="/usr/lib/postgresql/$PGMESH_MAJOR/bin:$PATH" exec postgres --describe-config'],
    Env: [`PGMESH_MAJOR=${input.postgresMajor}`],
    User: 'root',
    Tty: false,
    Labels: { [LABELS.hostId]: input.hostId, [LABELS.describeConfigOf]: input.imageId, [LABELS.component]: 'describe-config' },
    HostConfig: { NetworkMode: 'none' }
  }
}

export interface TaskInput {
  instanceId: string
  databaseId: string
  nodeName: string
  hostId: string
  image: string
  postgresMajor: number
  /** Published in host mode and listened on inside the container. */
  port: number
  /** This host's addresses, made local inside the container (see START_SCRIPT). */
  hostAddresses: string[]
  /** Host-side directories, bind-mounted at CONTAINER_PATHS. */
  dirs: { data: string, configs: string, socket: string }
  network: string
  extraLabels: Record<string, string>
  /** Bind mounts of the spec's extra_volumes; absent when none (so tasks without them keep their spec hash). */
  extraVolumes?: Array<{ hostPath: string, destinationPath: string }>
}

function mounts (input: TaskInput): Array<{ Type: 'bind', Source: string, Target: string, ReadOnly?: boolean }> {
  return [
    { Type: 'bind', Source: input.dirs.data, Target: CONTAINER_PATHS.data },
    { Type: 'bind', Source: input.dirs.configs, Target: CONTAINER_PATHS.configs, ReadOnly: true },
    { Type: 'bind', Source: input.dirs.socket, Target: CONTAINER_PATHS.socket },
    ...(input.extraVolumes ?? []).map(v => ({ Type: 'bind' as const, Source: v.hostPath, Target: v.destinationPath }))
  ]
}

export function serviceName (instanceId: string): string {
  return `postgres-${instanceId}`
}

/** The per-database overlay network (the anchor's name). */
export function networkName (databaseId: string): string {
  return `${databaseId}-database`
}

export const LABELS = {
  hostId: 'pgedge.host.id',
  databaseId: 'pgedge.database.id',
  instanceId: 'pgedge.instance.id',
  nodeName: 'pgedge.node.name',
  component: 'pgedge.component',
  /** On a replica's one-shot clone container (not an instance container: status and events ignore it). */
  cloneOf: 'pgmesh.clone-of',
  /** On a restore's one-shot container (not an instance container either). */
  restoreOf: 'pgmesh.restore-of',
  /** On the one-shot container that lists an image's server parameters (not an instance container either). */
  describeConfigOf: 'pgmesh.describe-config-of',
  /** Hash of the task's spec, to tell whether the running container already is the wanted one. */
  specHash: 'pgmesh.spec-hash'
} as const

function labels (input: TaskInput): Record<string, string> {
  return {
    ...input.extraLabels,
    [LABELS.hostId]: input.hostId,
    [LABELS.databaseId]: input.databaseId,
    [LABELS.instanceId]: input.instanceId,
    [LABELS.nodeName]: input.nodeName,
    [LABELS.component]: 'postgres'
  }
}

function env (input: TaskInput): string[] {
  const local = input.hostAddresses.map(a => a.includes(':') ? `${a}/128` : `${a}/32`)
  // PGPASSFILE (a path): the postmaster's walreceiver (primary_conninfo) and pglogical's workers (subscription DSNs)
  // authenticate to peers as the superuser from it, with no password in any conninfo or catalog.
  return [`PGMESH_MAJOR=${input.postgresMajor}`, `PGMESH_LOCAL_ADDRESSES=${local.join(' ')}`, `PGPASSFILE=${CONTAINER_PATHS.passfile}`]
}

function healthTest (input: TaskInput): string[] {
  return ['CMD-SHELL', `PATH="/usr/lib/postgresql/${input.postgresMajor}/bin:$PATH" pg_isready -q -h ${CONTAINER_PATHS.socket} -p ${input.port}`]
}

const SECOND_NS = 1_000_000_000
const HEALTH = { Interval: 2 * SECOND_NS, Timeout: 5 * SECOND_NS, Retries: 5, StartPeriod: 60 * SECOND_NS }
const STOP_GRACE_SECONDS = 30

export function specHash (input: TaskInput): string {
  return createHash('sha256').update(JSON.stringify(input)).digest('hex').slice(0, 16)
}

/**
 * One replicated service with one task, pinned to this host's swarm node: dnsrr endpoint and host-mode publishing
 * (no IPVS needed), stop-first updates (two postmasters must never share a data directory).
 */
export function serviceSpec (input: TaskInput, nodeId: string, replicas: 0 | 1, forceUpdate: number): Docker.CreateServiceOptions {
  const all = labels(input)
  return {
    Name: serviceName(input.instanceId),
    Labels: { ...all, [LABELS.specHash]: specHash(input) },
    TaskTemplate: {
      ContainerSpec: {
        Image: input.image,
        Command: ['/bin/sh', '-c', START_SCRIPT],
        Hostname: serviceName(input.instanceId),
        Env: env(input),
        User: 'root',
        Labels: { ...all, [LABELS.specHash]: specHash(input) },
        Mounts: mounts(input),
        StopSignal: 'SIGINT',
        StopGracePeriod: STOP_GRACE_SECONDS * SECOND_NS,
        CapabilityAdd: ['CAP_NET_ADMIN'],
        // The Engine API's key; @types/dockerode spells it HealthCheck, which the Engine ignores.
        ...{ Healthcheck: { Test: healthTest(input), ...HEALTH } }
      },
      RestartPolicy: { Condition: 'any', Delay: SECOND_NS },
      Placement: { Constraints: [`node.id==${nodeId}`] },
      Networks: [{ Target: input.network, Aliases: [serviceName(input.instanceId)] }],
      ForceUpdate: forceUpdate
    },
    Mode: { Replicated: { Replicas: replicas } },
    UpdateConfig: { Parallelism: 1, Order: 'stop-first', FailureAction: 'continue' },
    EndpointSpec: {
      Mode: 'dnsrr',
      Ports: [{ Name: 'postgres', Protocol: 'tcp', TargetPort: input.port, PublishedPort: input.port, PublishMode: 'host' }]
    }
  }
}

/** The same instance as a plain container, for a worker host (services can only be created through a manager). */
export function containerSpec (input: TaskInput): Docker.ContainerCreateOptions {
  const name = serviceName(input.instanceId)
  const port = `${input.port}/tcp`
  return {
    name,
    Hostname: name,
    Image: input.image,
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [START_SCRIPT],
    Env: env(input),
    User: 'root',
    Labels: { ...labels(input), [LABELS.specHash]: specHash(input) },
    StopSignal: 'SIGINT',
    StopTimeout: STOP_GRACE_SECONDS,
    Healthcheck: { Test: healthTest(input), ...HEALTH },
    ExposedPorts: { [port]: {} },
    HostConfig: {
      Mounts: mounts(input),
      RestartPolicy: { Name: 'unless-stopped' },
      PortBindings: { [port]: [{ HostPort: String(input.port) }] },
      CapAdd: ['NET_ADMIN'],
      NetworkMode: input.network
    },
    NetworkingConfig: { EndpointsConfig: { [input.network]: { Aliases: [name] } } }
  }
}
