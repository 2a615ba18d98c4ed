import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidInputError, NotFoundError, TerminalError } from '@pgmesh/model'
import {
  assertInstanceId, basebackupArgs, desiredSettings, dropReplicaSlot, type InstanceEvent, InstanceEvents, InstanceLocks,
  type InstanceSpec, type InstanceStatus, nextStandbyOf, type Orchestrator, pickFreePort, promoteServer, reloadSettings,
  renderHba, renderIdent, renderManagedConf, replicaSlotExists, type ReplicationLibrary, type ScriptsDone, serverRole,
  setupDatabase, type StandbyOf, SYSTEM_SUPERUSER, withAdminConnection
} from '@pgmesh/orchestrator-process'
import Docker from 'dockerode'
import type pg from 'pg'
import type { Logger } from 'pino'
import { ImageParameters } from './image-parameters.js'
import {
  cloneContainerName, cloneContainerSpec, CONTAINER_PATHS, containerSpec, LABELS, networkName, serviceName, serviceSpec,
  specHash, type TaskInput
} from './task-spec.js'

/** A host component as GET /v1/hosts shows it (`{healthy, error?, details?}`). */
export interface DockerComponent { healthy: boolean, error?: string, details?: Record<string, unknown> }

export interface SwarmOrchestratorOptions {
  /** This host's id: instances are labelled with it and only this host's are listed. */
  hostId: string
  /** Instances live under `<dataDir>/instances/<instanceId>/`, bind-mounted into their containers at the same path. */
  dataDir: string
  logger: Logger
  /** The Docker Engine socket: a path or `unix://…`; default /var/run/docker.sock. */
  dockerHost?: string
  /** The Postgres image when a database names none (`orchestrator_opts.swarm.image`); default `pgmesh/postgres:<major>`. */
  defaultImage?: string
  /** How often containers are looked at for exit/restart events; default 2 s. */
  monitorIntervalMs?: number
  /** How long a created or updated instance may take to accept connections; default 180 s. */
  readyTimeoutMs?: number
}

/** What the orchestrator remembers about an instance, in `<instance dir>/state.json`. */
interface InstanceRecord {
  instanceId: string
  databaseId: string
  nodeName: string
  /** Published (host mode) and listened on inside the container; chosen once for `port: 0` and kept. */
  port: number
  postgresMajor: number
  /** false after stopInstance: the service is scaled to 0 (a worker's container stopped). */
  desiredRunning: boolean
  /** Bumped to make Swarm replace the task (a restart). */
  forceUpdate: number
  /** Settings and auth files (hash) the running server has loaded; updated only once a change is applied. */
  appliedSettings: Record<string, string>
  appliedAuth?: string
  scriptsDone: ScriptsDone
  /** Set while the instance is a streaming replica (cleared by promote). */
  standbyOf?: StandbyOf
  /** The replica's base backup finished; until then it is (re)cloned before its container is created. */
  cloned?: boolean
}

interface ConfigChange { settings: string[], auth: boolean, applied: { settings: Record<string, string>, auth: string } }

interface Paths { dir: string, data: string, configs: string, socket: string, state: string }

interface SwarmRole { nodeId: string, manager: boolean }

const DEFAULT_MAJOR = 15
const MAX_SOCKET_PATH = 107 - '/.s.PGSQL.65535.lock'.length
/** `<database id>-<node name>-<host hash>` (model's instanceId()); the database id may itself contain `-`. */
const INSTANCE_ID_PARTS = /^(.+)-(n\d+)-([0-9a-z]+)$/

function isNotFound (err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404
}

function delay (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Runs each Postgres instance placed on this host as a Docker Swarm service `postgres-<instance id>` pinned to this
 * host's swarm node (on a worker, where services cannot be created, as a plain container with a restart policy),
 * on the database's attachable overlay network, with its data, config and socket directories bind-mounted from
 * this host's data dir. The control plane talks to Postgres over the unix socket in that bind mount, so admin
 * connections need neither the network nor a password. All operations on one instance are serialised.
 */
export class SwarmOrchestrator implements Orchestrator {
  private readonly docker: Docker
  private readonly instancesDir: string
  private readonly log: Logger
  private readonly locks = new InstanceLocks()
  private readonly events: InstanceEvents
  /** Last seen postmaster pid per instance (0 = seen down), for exit/restart events. */
  private readonly seenPids = new Map<string, number>()
  private readonly reservedPorts = new Set<number>()
  private readonly imageParameters: ImageParameters
  private timer: NodeJS.Timeout | undefined
  private dockerStatus: DockerComponent = { healthy: false, error: 'docker not checked yet' }

  private constructor (private readonly options: SwarmOrchestratorOptions) {
    const socketPath = (options.dockerHost ?? '/var/run/docker.sock').replace(/^unix:\/\//, '')
    this.docker = new Docker({ socketPath })
    this.instancesDir = join(options.dataDir, 'instances')
    this.log = options.logger.child({ component: 'orchestrator-swarm' })
    this.events = new InstanceEvents(this.log)
    this.imageParameters = new ImageParameters(this.docker, options.hostId, this.log)
  }

  static async open (options: SwarmOrchestratorOptions): Promise<SwarmOrchestrator> {
    const orchestrator = new SwarmOrchestrator(options)
    await mkdir(orchestrator.instancesDir, { recursive: true, mode: 0o755 })
    const role = await orchestrator.swarmRole().catch((err: unknown) => {
      // A stopped dockerd must not keep the daemon (and its API) down; instances show as crashed meanwhile.
      orchestrator.log.error({ err: (err as Error).message }, 'docker is not usable yet')
      return undefined
    })
    if (role !== undefined) orchestrator.log.info({ nodeId: role.nodeId, manager: role.manager }, 'swarm node')
    await orchestrator.refreshDockerStatus()
    orchestrator.timer = setInterval(() => {
      void orchestrator.refreshDockerStatus()
      orchestrator.monitor().catch(() => undefined)
    }, options.monitorIntervalMs ?? 2000)
    orchestrator.timer.unref()
    return orchestrator
  }

  /** The anchor's `docker` host component (container counts and the Swarm node's state), as of the last check. */
  dockerComponent (): DockerComponent {
    return this.dockerStatus
  }

  private async refreshDockerStatus (): Promise<void> {
    try {
      const info = await this.docker.info() as {
        Containers?: number, ContainersRunning?: number, ContainersStopped?: number, ContainersPaused?: number,
        Swarm?: { LocalNodeState?: string, ControlAvailable?: boolean, Error?: string }
      }
      const state = info.Swarm?.LocalNodeState ?? 'unknown'
      const swarmError = info.Swarm?.Error ?? ''
      this.dockerStatus = {
        healthy: state === 'active',
        ...(state === 'active' ? {} : { error: `this host is not an active swarm node (state: ${state})` }),
        details: {
          containers: info.Containers ?? 0,
          containers_running: info.ContainersRunning ?? 0,
          containers_stopped: info.ContainersStopped ?? 0,
          containers_paused: info.ContainersPaused ?? 0,
          swarm: { local_node_state: state, control_available: info.Swarm?.ControlAvailable === true, ...(swarmError === '' ? {} : { error: swarmError }) }
        }
      }
    } catch (err) {
      this.dockerStatus = { healthy: false, error: `docker is not reachable: ${(err as Error).message}` }
    }
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    await this.locks.idle()
  }

  onEvent (listener: (event: InstanceEvent) => void): () => void {
    return this.events.on(listener)
  }

  async ensureInstance (spec: InstanceSpec): Promise<InstanceStatus> {
    assertInstanceId(spec.instanceId)
    if (!Number.isInteger(spec.port) || spec.port < 0 || spec.port > 65535) throw new InvalidInputError(`invalid port ${spec.port}`)
    const parts = INSTANCE_ID_PARTS.exec(spec.instanceId)
    if (parts === null) throw new InvalidInputError(`instance id '${spec.instanceId}' is not <database id>-<node name>-<host hash>`)
    return await this.locks.run(spec.instanceId, async () => {
      const role = await this.swarmRole()
      const paths = this.paths(spec.instanceId)
      const previous = await this.readState(paths)
      const major = spec.postgresVersion === undefined ? previous?.postgresMajor ?? DEFAULT_MAJOR : Number(spec.postgresVersion.split('.')[0])
      if (previous !== undefined && previous.postgresMajor !== major) {
        throw new TerminalError(`instance ${spec.instanceId}: major version cannot change from ${previous.postgresMajor} to ${major}`)
      }
      const state: InstanceRecord = previous ?? {
        instanceId: spec.instanceId,
        databaseId: parts[1] ?? '',
        nodeName: parts[2] ?? '',
        port: 0,
        postgresMajor: major,
        desiredRunning: true,
        forceUpdate: 0,
        appliedSettings: {},
        scriptsDone: { postInit: false, postDatabaseCreate: false }
      }
      state.port = await this.choosePort(spec, previous)
      state.desiredRunning = true
      const standbyOf = nextStandbyOf(spec, previous === undefined, state.standbyOf, this.log)
      if (standbyOf === undefined) delete state.standbyOf
      else state.standbyOf = standbyOf
      for (const dir of [paths.dir, paths.data, paths.configs, paths.socket]) await mkdir(dir, { recursive: true, mode: 0o755 })
      const image = spec.swarm?.image ?? this.options.defaultImage ?? `pgmesh/postgres:${major}`
      const serverParameters = await this.imageParameters.of(image, major)
      if (state.standbyOf !== undefined && state.cloned !== true) {
        await this.writeState(paths, state)
        await this.clone(paths, state, image, state.standbyOf)
        state.cloned = true
        // The clone holds what the primary's scripts did: once promoted, it must not run them again.
        state.scriptsDone = { postInit: true, postDatabaseCreate: true }
      }
      // Written now (a new container reads them at start); recorded as applied only once the server has them.
      const configChange = await this.writeConfig(paths, spec, state, image.includes('spock') ? 'spock' : 'pglogical', serverParameters)
      await this.writeState(paths, state)

      const input: TaskInput = {
        instanceId: spec.instanceId,
        databaseId: state.databaseId,
        nodeName: state.nodeName,
        hostId: this.options.hostId,
        image,
        postgresMajor: major,
        port: state.port,
        hostAddresses: spec.listenAddresses.filter(a => !['*', '0.0.0.0', '::', '127.0.0.1', '::1', 'localhost'].includes(a)),
        dirs: { data: paths.data, configs: paths.configs, socket: paths.socket },
        network: await this.ensureNetwork(state.databaseId, role),
        extraLabels: spec.swarm?.extraLabels ?? {}
      }
      const replaced = role.manager ? await this.ensureService(input, role, state) : await this.ensureContainer(input, state)
      await this.waitReady(state, specHash(input))
      if (!replaced) await this.applyConfigChange(paths, state, configChange)
      state.appliedSettings = configChange.applied.settings
      state.appliedAuth = configChange.applied.auth
      await this.writeState(paths, state)
      const status = await this.inspect(paths, state)
      if (spec.database !== undefined && status.role === 'primary') {
        await setupDatabase(async (database, work) => await this.withClient(paths, state, database, work), spec.database, state.scriptsDone, async script => {
          state.scriptsDone[script] = true
          await this.writeState(paths, state)
        })
      }
      return status
    })
  }

  async startInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.writeState(paths, state)
      await this.setRunning(state, true)
      await this.waitReady(state, undefined)
      return await this.inspect(paths, state)
    })
  }

  async stopInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = false
      await this.writeState(paths, state)
      await this.setRunning(state, false)
      await this.waitGone(state.instanceId)
      return await this.inspect(paths, state)
    })
  }

  async restartInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.writeState(paths, state)
      await this.restart(paths, state)
      return await this.inspect(paths, state)
    })
  }

  async promote (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      const formerPrimary = state.standbyOf
      await this.withClient(paths, state, 'postgres', promoteServer)
      // primary_conninfo stays in the config file until the next ensureInstance rewrites it; a primary ignores it.
      delete state.standbyOf
      delete state.cloned
      await this.writeState(paths, state)
      // Not awaited: after a failover the former primary's host may take seconds to fail the connection, and the
      // caller keeps the new primary read-only until this returns.
      if (formerPrimary !== undefined) void dropReplicaSlot(formerPrimary, this.log)
      this.log.info({ instanceId }, 'promoted')
      return await this.inspect(paths, state)
    })
  }

  async removeInstance (instanceId: string): Promise<void> {
    assertInstanceId(instanceId)
    await this.locks.run(instanceId, async () => {
      const paths = this.paths(instanceId)
      const state = await this.readState(paths)
      if ((await this.swarmRole()).manager) {
        await this.docker.getService(serviceName(instanceId)).remove().catch((err: unknown) => { if (!isNotFound(err)) throw err })
      }
      // A worker's container, or a service task the manager has not stopped yet: the data must not be in use.
      for (const container of await this.containers(instanceId)) {
        await this.docker.getContainer(container.Id).remove({ force: true }).catch((err: unknown) => { if (!isNotFound(err)) throw err })
      }
      await this.removeCloneContainer(instanceId)
      await this.waitGone(instanceId)
      if (state?.standbyOf !== undefined) await dropReplicaSlot(state.standbyOf, this.log)
      await rm(paths.dir, { recursive: true, force: true })
      if (!paths.socket.startsWith(paths.dir)) await rm(paths.socket, { recursive: true, force: true })
      this.seenPids.delete(instanceId)
      if (state !== undefined) {
        this.reservedPorts.delete(state.port)
        await this.removeNetworkIfUnused(state.databaseId)
      }
      this.log.info({ instanceId }, 'removed')
    })
  }

  async status (instanceId: string): Promise<InstanceStatus | undefined> {
    assertInstanceId(instanceId)
    const paths = this.paths(instanceId)
    const state = await this.readState(paths)
    return state === undefined ? undefined : await this.inspect(paths, state)
  }

  async list (): Promise<InstanceStatus[]> {
    const all = await Promise.all((await this.instanceIds()).map(async id => await this.status(id)))
    return all.filter((s): s is InstanceStatus => s !== undefined)
  }

  // ---- docker ------------------------------------------------------------------------------------------------

  private async swarmRole (): Promise<SwarmRole> {
    const info = await this.docker.info() as { Swarm?: { NodeID?: string, LocalNodeState?: string, ControlAvailable?: boolean } }
    const swarm = info.Swarm
    if (swarm?.LocalNodeState !== 'active' || swarm.NodeID === undefined || swarm.NodeID === '') {
      throw new Error(`docker on this host is not an active swarm node (state: ${swarm?.LocalNodeState ?? 'unknown'}); run docker swarm init or join`)
    }
    return { nodeId: swarm.NodeID, manager: swarm.ControlAvailable === true }
  }

  /**
   * The database's attachable overlay, created by the first manager host that needs it. Swarm does not enforce
   * unique network names, so concurrent creations can make two: everyone uses the oldest, and extras are removed.
   */
  private async ensureNetwork (databaseId: string, role: SwarmRole): Promise<string> {
    const name = networkName(databaseId)
    // A worker sees a swarm network only once something of its own is attached; the Engine resolves the name then.
    if (!role.manager) return name
    const find = async (): Promise<Docker.NetworkInspectInfo[]> => (await this.docker.listNetworks({ filters: { name: [name] } }))
      .filter(n => n.Name === name && n.Scope === 'swarm')
      .sort((a, b) => a.Created.localeCompare(b.Created) || a.Id.localeCompare(b.Id))
    let networks = await find()
    if (networks.length === 0) {
      await this.docker.createNetwork({
        Name: name, Driver: 'overlay', Attachable: true, CheckDuplicate: true,
        Labels: { [LABELS.databaseId]: databaseId, [LABELS.component]: 'network' }
      }).catch((err: unknown) => { if ((err as { statusCode?: number }).statusCode !== 409) throw err })
      networks = await find()
    }
    const [chosen, ...extras] = networks
    if (chosen === undefined) throw new Error(`network ${name} could not be created`)
    for (const extra of extras) await this.docker.getNetwork(extra.Id).remove().catch(() => undefined)
    return chosen.Id
  }

  /** Once no service of the database is left, its network goes (the last host to remove an instance does it). */
  private async removeNetworkIfUnused (databaseId: string): Promise<void> {
    const role = await this.swarmRole().catch(() => undefined)
    if (role?.manager !== true) return
    const services = await this.docker.listServices({ filters: { label: [`${LABELS.databaseId}=${databaseId}`] } })
    if (services.length > 0) return
    const name = networkName(databaseId)
    for (const network of (await this.docker.listNetworks({ filters: { name: [name] } })).filter(n => n.Name === name)) {
      // Tasks of just-removed services (or workers' containers) may still hold endpoints for a moment.
      for (let attempt = 0; ; attempt++) {
        try {
          await this.docker.getNetwork(network.Id).remove()
          break
        } catch (err) {
          if (isNotFound(err)) break
          if (attempt >= 20) {
            this.log.warn({ network: name, err: (err as Error).message }, 'could not remove the database network')
            break
          }
          await delay(500)
        }
      }
    }
  }

  /** Creates or updates the service; true when Swarm (re)creates the task because of it. */
  private async ensureService (input: TaskInput, role: SwarmRole, state: InstanceRecord): Promise<boolean> {
    const name = serviceName(input.instanceId)
    const wanted = serviceSpec(input, role.nodeId, 1, state.forceUpdate)
    const existing = await this.docker.getService(name).inspect().catch((err: unknown) => {
      if (isNotFound(err)) return undefined
      throw err
    }) as Docker.Service | undefined
    if (existing === undefined) {
      await this.docker.createService(wanted)
      this.log.info({ instanceId: input.instanceId, image: input.image, port: input.port }, 'service created')
      return true
    }
    const running = existing.Spec?.Mode?.Replicated?.Replicas === 1
    if (existing.Spec?.Labels?.[LABELS.specHash] === specHash(input) && running) return false
    await this.docker.getService(existing.ID).update({ _query: { version: existing.Version?.Index }, _body: wanted })
    this.log.info({ instanceId: input.instanceId, image: input.image, port: input.port }, 'service updated')
    return true
  }

  /** On a worker: a plain container, replaced when its spec changed. */
  private async ensureContainer (input: TaskInput, state: InstanceRecord): Promise<boolean> {
    const hash = specHash(input)
    const existing = await this.containers(input.instanceId)
    const current = existing.find(c => c.Labels[LABELS.specHash] === hash)
    for (const stale of existing.filter(c => c !== current)) await this.docker.getContainer(stale.Id).remove({ force: true })
    if (current !== undefined) {
      if (current.State === 'running') return false
      await this.docker.getContainer(current.Id).start()
      return true
    }
    if (existing.length > 0) await this.waitGone(input.instanceId)
    const container = await this.docker.createContainer(containerSpec(input))
    await container.start()
    this.log.info({ instanceId: input.instanceId, image: input.image, port: input.port, forceUpdate: state.forceUpdate }, 'container created (worker host)')
    return true
  }

  /**
   * A replica's data directory: pg_basebackup in a one-shot container of the instance's own image (this host may
   * have no Postgres binaries) on the host's network, over the instance's slot on the primary (created by the clone
   * when the primary has none). A leftover from an interrupted clone is removed first.
   */
  private async clone (paths: Paths, state: InstanceRecord, image: string, primary: StandbyOf): Promise<void> {
    const started = Date.now()
    const slotExists = await replicaSlotExists(primary, this.log)
    await this.removeCloneContainer(state.instanceId)
    const container = await this.docker.createContainer(cloneContainerSpec({
      instanceId: state.instanceId,
      databaseId: state.databaseId,
      hostId: this.options.hostId,
      image,
      postgresMajor: state.postgresMajor,
      dataDir: paths.data,
      basebackupArgs: basebackupArgs(primary, CONTAINER_PATHS.pgdata, slotExists)
    }))
    try {
      await container.start()
      const { StatusCode: code } = await container.wait() as { StatusCode: number }
      if (code !== 0) {
        const output = (await container.logs({ stdout: true, stderr: true, tail: 20 })).toString().trim()
        throw new Error(`cloning ${state.instanceId} from ${primary.host}:${primary.port} failed (exit ${code}): ${output}`)
      }
    } finally {
      await container.remove({ force: true }).catch(() => undefined)
    }
    this.log.info({ instanceId: state.instanceId, primary: `${primary.host}:${primary.port}`, ms: Date.now() - started }, 'base backup done')
  }

  private async removeCloneContainer (instanceId: string): Promise<void> {
    await this.docker.getContainer(cloneContainerName(instanceId)).remove({ force: true })
      .catch((err: unknown) => { if (!isNotFound(err)) throw err })
  }

  /** This instance's containers on this host (service tasks and workers' containers alike), newest first. */
  private async containers (instanceId: string): Promise<Docker.ContainerInfo[]> {
    const found = await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.instanceId}=${instanceId}`] } })
    return found.sort((a, b) => b.Created - a.Created)
  }

  private async setRunning (state: InstanceRecord, running: boolean): Promise<void> {
    const role = await this.swarmRole()
    if (role.manager) {
      const service = await this.docker.getService(serviceName(state.instanceId)).inspect() as Docker.Service
      const spec = service.Spec ?? {}
      await this.docker.getService(service.ID).update({
        _query: { version: service.Version?.Index }, _body: { ...spec, Mode: { Replicated: { Replicas: running ? 1 : 0 } } }
      })
      return
    }
    for (const c of await this.containers(state.instanceId)) {
      const container = this.docker.getContainer(c.Id)
      if (running && c.State !== 'running') await container.start()
      if (!running && c.State === 'running') await container.stop()
    }
  }

  /** A new task (service) or a restarted container (worker), then wait until it accepts connections. */
  private async restart (paths: Paths, state: InstanceRecord): Promise<void> {
    const before = (await this.containers(state.instanceId)).find(c => c.State === 'running')
    const role = await this.swarmRole()
    if (role.manager) {
      state.forceUpdate++
      await this.writeState(paths, state)
      const service = await this.docker.getService(serviceName(state.instanceId)).inspect() as Docker.Service
      const spec = service.Spec ?? {}
      const template = spec.TaskTemplate ?? {}
      // A stopped instance (scaled to 0) is started: with no task to replace, a forced update alone would start none.
      await this.docker.getService(service.ID).update({
        _query: { version: service.Version?.Index },
        _body: { ...spec, Mode: { Replicated: { Replicas: 1 } }, TaskTemplate: { ...template, ForceUpdate: state.forceUpdate } }
      })
    } else if (before !== undefined) {
      await this.docker.getContainer(before.Id).restart()
    } else {
      await this.setRunning(state, true)
    }
    await this.waitReady(state, undefined, before?.Id)
    this.log.info({ instanceId: state.instanceId }, 'restarted')
  }

  /**
   * Until a running container of the instance (with the wanted spec, and not `notId` when replacing one) accepts
   * connections over its socket.
   */
  private async waitReady (state: InstanceRecord, hash: string | undefined, notId?: string): Promise<void> {
    const deadline = Date.now() + (this.options.readyTimeoutMs ?? 180_000)
    const paths = this.paths(state.instanceId)
    let last = 'no container yet'
    for (;;) {
      const running = (await this.containers(state.instanceId)).find(c =>
        c.State === 'running' && c.Id !== notId && (hash === undefined || c.Labels[LABELS.specHash] === hash))
      if (running !== undefined) {
        try {
          await this.withClient(paths, state, 'postgres', async client => { await client.query('SELECT 1') })
          return
        } catch (err) {
          last = `not accepting connections yet: ${(err as Error).message}`
        }
      } else {
        last = await this.taskProblem(state.instanceId) ?? 'waiting for its container'
      }
      if (Date.now() > deadline) throw new Error(`instance ${state.instanceId} did not become ready: ${last}`)
      await delay(250)
    }
  }

  /** Why the service has no running task, as Swarm says it (manager hosts only; best effort). */
  private async taskProblem (instanceId: string): Promise<string | undefined> {
    try {
      const tasks = await this.docker.listTasks({ filters: { service: [serviceName(instanceId)] } }) as Array<{ Status?: { State?: string, Err?: string, Message?: string }, CreatedAt?: string }>
      const latest = tasks.sort((a, b) => (b.CreatedAt ?? '').localeCompare(a.CreatedAt ?? ''))[0]
      if (latest?.Status === undefined) return undefined
      return `task ${latest.Status.State ?? '?'}${latest.Status.Err === undefined ? '' : `: ${latest.Status.Err}`}`
    } catch {
      return undefined
    }
  }

  private async waitGone (instanceId: string): Promise<void> {
    for (let i = 0; i < 240; i++) {
      if ((await this.containers(instanceId)).every(c => c.State !== 'running' && c.State !== 'restarting')) return
      await delay(250)
    }
    throw new Error(`the containers of ${instanceId} did not stop`)
  }

  // ---- configuration -----------------------------------------------------------------------------------------

  /**
   * postgresql.conf (the process orchestrator's settings, with container paths), pg_hba.conf and pg_ident.conf,
   * all outside pgdata in the read-only configs mount, so they exist before initdb and travel with nothing else.
   */
  private async writeConfig (
    paths: Paths, spec: InstanceSpec, state: InstanceRecord, library: ReplicationLibrary, serverParameters: ReadonlySet<string>
  ): Promise<ConfigChange> {
    const settings = desiredSettings({
      spec: { instanceId: spec.instanceId, listenAddresses: ['*'], ...(spec.postgresqlConf === undefined ? {} : { postgresqlConf: spec.postgresqlConf }) },
      port: state.port, socketDir: CONTAINER_PATHS.socket, logDir: CONTAINER_PATHS.log, library, serverParameters,
      ...(state.standbyOf === undefined ? {} : { standbyOf: state.standbyOf })
    })
    const conf = renderManagedConf(settings) +
      `hba_file = '${CONTAINER_PATHS.configs}/pg_hba.conf'\nident_file = '${CONTAINER_PATHS.configs}/pg_ident.conf'\n`
    await this.writeConfigFile(join(paths.configs, 'postgresql.conf'), conf)
    const hba = renderHba(spec)
    const ident = renderIdent(spec)
    await this.writeConfigFile(join(paths.configs, 'pg_hba.conf'), hba)
    await this.writeConfigFile(join(paths.configs, 'pg_ident.conf'), ident)
    const authHash = createHash('sha256').update(hba).update('\0').update(ident).digest('hex').slice(0, 16)
    const applied = state.appliedSettings
    const names = new Set([...Object.keys(applied), ...settings.keys()])
    const changed = [...names].filter(name => applied[name] !== settings.get(name))
    return { settings: changed, auth: state.appliedAuth !== authHash, applied: { settings: Object.fromEntries(settings), auth: authHash } }
  }

  /** Readable by the container's postgres user (no secrets in these files). */
  private async writeConfigFile (path: string, content: string): Promise<void> {
    if (await readFile(path, 'utf8').catch(() => '') === content) return
    await writeFile(`${path}.tmp`, content, { mode: 0o644 })
    await rename(`${path}.tmp`, path)
  }

  /** Reload, or restart when a changed setting needs it (context `postmaster`, or `pending_restart` after reload). */
  private async applyConfigChange (paths: Paths, state: InstanceRecord, change: ConfigChange): Promise<void> {
    if (change.settings.length === 0 && !change.auth) return
    const needsRestart = await this.withClient(paths, state, 'postgres', async client => await reloadSettings(client, change.settings))
    if (needsRestart.length > 0) {
      this.log.info({ instanceId: state.instanceId, settings: needsRestart }, 'restarting for settings that need it')
      await this.restart(paths, state)
    } else {
      this.log.info({ instanceId: state.instanceId, settings: change.settings, auth: change.auth }, 'reloaded configuration')
    }
  }

  // ---- observed state ----------------------------------------------------------------------------------------

  /** From Docker (the instance's container and its health) and from Postgres itself (over the socket). */
  private async inspect (paths: Paths, state: InstanceRecord): Promise<InstanceStatus> {
    const base = {
      instanceId: state.instanceId,
      port: state.port,
      postgresVersion: String(state.postgresMajor),
      admin: { host: paths.socket, port: state.port, user: SYSTEM_SUPERUSER }
    }
    let running: Docker.ContainerInfo | undefined
    try {
      running = (await this.containers(state.instanceId)).find(c => c.State === 'running')
    } catch (err) {
      this.log.debug({ instanceId: state.instanceId, err: (err as Error).message }, 'docker not reachable')
      return { ...base, state: state.desiredRunning ? 'crashed' : 'stopped' }
    }
    if (running === undefined) return { ...base, state: state.desiredRunning ? 'crashed' : 'stopped' }
    const container = await this.docker.getContainer(running.Id).inspect().catch(() => undefined)
    const pid = container?.State.Pid
    try {
      const server = await this.withClient(paths, state, 'postgres', serverRole)
      return { ...base, state: 'running', ...server, ...(pid === undefined ? {} : { pid }) }
    } catch {
      // Not accepting connections: still starting, unless Docker's health check has given up on it.
      const unhealthy = container?.State.Health?.Status === 'unhealthy'
      return { ...base, state: unhealthy ? 'crashed' : 'starting', ...(pid === undefined ? {} : { pid }) }
    }
  }

  /** Docker restarts containers by itself; this only reports what it saw, so a reconciler can look again. */
  private async monitor (): Promise<void> {
    for (const id of await this.instanceIds()) {
      if (this.locks.busy(id)) continue
      const state = await this.readState(this.paths(id))
      if (state === undefined || !state.desiredRunning) continue
      const running = await this.containers(id).then(cs => cs.find(c => c.State === 'running'), () => undefined)
      const pid = running === undefined ? 0 : await this.docker.getContainer(running.Id).inspect().then(c => c.State.Pid, () => 0)
      const seen = this.seenPids.get(id)
      this.seenPids.set(id, pid)
      if (seen === undefined || seen === pid) continue
      if (pid === 0) this.events.emit({ type: 'exited', instanceId: id, pid: seen })
      else if (seen === 0) this.events.emit({ type: 'restarted', instanceId: id, pid, attempt: 1 })
      else {
        this.events.emit({ type: 'exited', instanceId: id, pid: seen })
        this.events.emit({ type: 'restarted', instanceId: id, pid, attempt: 1 })
      }
    }
  }

  // ---- files, locks, SQL -------------------------------------------------------------------------------------

  private paths (instanceId: string): Paths {
    const dir = join(this.instancesDir, instanceId)
    const inside = join(dir, 'run')
    // Unix socket paths are limited to ~107 bytes; a deep data dir uses a short directory of its own, still inside
    // the data dir so that a containerised daemon (same path inside and out) reaches it too.
    const socket = inside.length <= MAX_SOCKET_PATH
      ? inside
      : join(this.options.dataDir, 's', createHash('sha256').update(instanceId).digest('hex').slice(0, 12))
    return { dir, data: join(dir, 'data'), configs: join(dir, 'configs'), socket, state: join(dir, 'state.json') }
  }

  private async instanceIds (): Promise<string[]> {
    const entries = await readdir(this.instancesDir, { withFileTypes: true }).catch(() => [])
    return entries.filter(e => e.isDirectory()).map(e => e.name).sort()
  }

  private async readState (paths: Paths): Promise<InstanceRecord | undefined> {
    try {
      return JSON.parse(await readFile(paths.state, 'utf8')) as InstanceRecord
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  private async writeState (paths: Paths, state: InstanceRecord): Promise<void> {
    await mkdir(paths.dir, { recursive: true })
    await writeFile(`${paths.state}.tmp`, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 })
    await rename(`${paths.state}.tmp`, paths.state)
  }

  private async withExisting<T> (instanceId: string, operation: (paths: Paths, state: InstanceRecord) => Promise<T>): Promise<T> {
    assertInstanceId(instanceId)
    return await this.locks.run(instanceId, async () => {
      const paths = this.paths(instanceId)
      const state = await this.readState(paths)
      if (state === undefined) throw new NotFoundError(`instance ${instanceId} not found`)
      return await operation(paths, state)
    })
  }

  private async withClient<T> (paths: Paths, state: InstanceRecord, database: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
    if (paths.socket.length > MAX_SOCKET_PATH) throw new Error(`data dir ${this.options.dataDir} is too long for a unix socket path`)
    return await withAdminConnection({ host: paths.socket, port: state.port, database }, this.log, work)
  }

  /**
   * Fixed, or for `port: 0` a random one chosen once: free on this host's addresses (the daemon shares the host's
   * network namespace) and held by no other instance here.
   */
  private async choosePort (spec: InstanceSpec, previous: InstanceRecord | undefined): Promise<number> {
    if (spec.port !== 0) return spec.port
    if (previous !== undefined && previous.port !== 0) return previous.port
    const taken = new Set(this.reservedPorts)
    for (const id of await this.instanceIds()) {
      const other = await this.readState(this.paths(id))
      if (other !== undefined) taken.add(other.port)
    }
    const port = await pickFreePort(spec.listenAddresses.map(a => a === '*' ? '0.0.0.0' : a), taken)
    this.reservedPorts.add(port)
    return port
  }
}
