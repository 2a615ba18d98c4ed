import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type BackupRun, type ExtraVolume, type InstanceRestore, type InstanceSpec, InvalidInputError, NotFoundError } from '@pgmesh/model'
import {
  adoptRestoredDatabase, restoredInPlaceSettings, withoutReplicationLibraries,
  type AdminConnect, applyConfigChange, assertInstanceId, assertInstanceSpec, dropReplicaSlot, followPrimary, type InstanceEvent,
  InstanceEvents, type InstanceRecord as BaseRecord, InstanceRecords, type InstanceStatus, type Orchestrator, parseInstanceId, promoteRecord,
  serverRole, setupPrimaryDatabase, statusBase, ensureSuperuserPassword, superuserPassfile, type SuperuserPassword, withAdminConnection
} from '@pgmesh/orchestrator'
import Docker from 'dockerode'
import type { Logger } from 'pino'
import { backupIn, ensureStanzaIn, pgbackrestConfHash, removeRestoreConf, restoreIn, writePgbackrestFiles, writeRestoreConf } from './backups.js'
import { cloneReplica } from './clone.js'
import { writeConfigFiles, writeServerConf } from './config-files.js'
import { ImageParameters } from './image-parameters.js'
import { chooseImage } from './image-policy.js'
import {
  delay, type DockerComponent, dockerComponent, ensureNetwork, instanceContainers, isNotFound, removeCloneContainer, removeNetworkIfUnused,
  swarmRole, type SwarmRole, taskProblem, waitGone
} from './swarm-docker.js'
import { containerSpec, LABELS, PASSFILE_NAME, serviceName, serviceSpec, specHash, type TaskInput } from './task-spec.js'

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
  /** Repositories a database's own image may come from; default: only the default image's (see chooseImage). */
  allowedImageRepositories?: readonly string[]
  /** Repositories of this host's version manifest, allowed as well (the manifest file may change while running). */
  manifestRepositories?: () => readonly string[]
  /** How often containers are looked at for exit/restart events; default 2 s. */
  monitorIntervalMs?: number
  /** How long a created or updated instance may take to accept connections; default 180 s. */
  readyTimeoutMs?: number
  /** The control plane's superuser password for peers' instances over TCP (from the data key); none before it. */
  superuserPassword?: SuperuserPassword
}

/**
 * The shared record (in `<instance dir>/state.json`) plus what a swarm instance needs. The port is published (host
 * mode) and listened on inside the container; desiredRunning false means the service is scaled to 0 (a worker's
 * container stopped); appliedSettings (and appliedAuth, a hash of the auth files) are what the running server has
 * loaded, updated only once a change is applied.
 */
interface InstanceRecord extends BaseRecord {
  databaseId: string
  nodeName: string
  /** Bumped to make Swarm replace the task (a restart). */
  forceUpdate: number
  appliedAuth?: string
  /** The replica's base backup finished; until then it is (re)cloned before its container is created. */
  cloned?: boolean
  /** A deferred change of the task itself (image, port, labels): only an ensureInstance without deferRestart applies it. */
  pendingTask?: boolean
  /** The pgBackRest config (hash) whose stanza was created and checked on this primary. */
  stanzaChecked?: string
  /** The image and extra volumes of the last ensure: a restore's one-shot container uses the same. */
  image?: string
  extraVolumes?: ExtraVolume[]
  /** Made from a backup and not adopted yet (dataRestored: pgbackrest restore finished); see adoptRestoredDatabase. */
  restoredFrom?: { sourceDatabaseName: string, databaseName: string, dataRestored: boolean }
}

/** How long a restored server may take to replay WAL up to its target and promote. */
const RECOVERY_TIMEOUT_MS = 600_000

interface Paths { dir: string, data: string, configs: string, socket: string }

const DEFAULT_MAJOR = 15
const MAX_SOCKET_PATH = 107 - '/.s.PGSQL.65535.lock'.length

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
  private readonly records: InstanceRecords<InstanceRecord>
  private readonly locks
  private readonly log: Logger
  private readonly events: InstanceEvents
  /** Last seen postmaster pid per instance (0 = seen down), for exit/restart events. */
  private readonly seenPids = new Map<string, number>()
  private readonly imageParameters: ImageParameters
  private timer: NodeJS.Timeout | undefined
  private dockerStatus: DockerComponent = { healthy: false, error: 'docker not checked yet' }

  private constructor (private readonly options: SwarmOrchestratorOptions) {
    const socketPath = (options.dockerHost ?? '/var/run/docker.sock').replace(/^unix:\/\//, '')
    this.docker = new Docker({ socketPath })
    this.instancesDir = join(options.dataDir, 'instances')
    this.records = new InstanceRecords(this.instancesDir)
    this.locks = this.records.locks
    this.log = options.logger.child({ component: 'orchestrator-swarm' })
    this.events = new InstanceEvents(this.log)
    this.imageParameters = new ImageParameters(this.docker, options.hostId, this.log)
  }

  static async open (options: SwarmOrchestratorOptions): Promise<SwarmOrchestrator> {
    const orchestrator = new SwarmOrchestrator(options)
    await mkdir(orchestrator.instancesDir, { recursive: true, mode: 0o755 })
    const role = await swarmRole(orchestrator.docker).catch((err: unknown) => {
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
    this.dockerStatus = await dockerComponent(this.docker)
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    await this.locks.idle()
  }

  onEvent (listener: (event: InstanceEvent) => void): () => void {
    return this.events.on(listener)
  }

  async ensureInstance (spec: InstanceSpec): Promise<InstanceStatus> {
    assertInstanceSpec(spec)
    const parts = parseInstanceId(spec.instanceId)
    if (parts === undefined) throw new InvalidInputError(`instance id '${spec.instanceId}' is not <database id>-<node name>-<host hash>`)
    return await this.locks.run(spec.instanceId, async () => {
      const role = await swarmRole(this.docker)
      const paths = this.paths(spec.instanceId)
      const previous = await this.records.read(spec.instanceId)
      const runningPort = previous?.port
      const major = spec.postgresVersion === undefined ? previous?.postgresMajor ?? DEFAULT_MAJOR : Number(spec.postgresVersion.split('.')[0])
      const state = await this.records.prepare(spec, previous, major, base => ({
        ...base, databaseId: parts.databaseId, nodeName: parts.nodeName, forceUpdate: 0
      }))
      followPrimary(state, spec, previous === undefined, this.log)
      for (const dir of [paths.dir, paths.data, paths.configs, paths.socket]) await mkdir(dir, { recursive: true, mode: 0o755 })
      // A bind mount's source must exist, or Swarm fails the task; made as `docker run -v` would.
      for (const volume of spec.swarm?.extraVolumes ?? []) await mkdir(volume.hostPath, { recursive: true, mode: 0o755 })
      await this.writePassfile(paths)
      const image = chooseImage({ specImage: spec.swarm?.image, defaultImage: this.options.defaultImage, allowedRepositories: this.options.allowedImageRepositories, major,
        ...(this.options.manifestRepositories === undefined ? {} : { manifestRepositories: this.options.manifestRepositories() }) })
      state.image = image
      if (spec.swarm?.extraVolumes === undefined) delete state.extraVolumes
      else state.extraVolumes = spec.swarm.extraVolumes
      const serverParameters = await this.imageParameters.of(image, major)
      if (state.standbyOf !== undefined && state.cloned !== true) {
        await this.records.write(state)
        await cloneReplica(this.docker, this.log, {
          instanceId: state.instanceId, databaseId: state.databaseId, hostId: this.options.hostId, image, postgresMajor: major, dataDir: paths.data
        }, state.standbyOf, this.password())
        state.cloned = true
        // The clone holds what the primary's scripts did: once promoted, it must not run them again.
        state.scriptsDone = { postInit: true, postDatabaseCreate: true }
      }
      if (state.standbyOf === undefined && spec.restore !== undefined && (state.restoredFrom?.dataRestored === false || !existsSync(join(paths.data, 'pgdata', 'PG_VERSION')))) {
        await this.bootstrapFromBackup(paths, state, spec.restore, major)
      }
      // Written now (a new container reads them at start); recorded as applied only once the server has them.
      await writePgbackrestFiles(paths.data, spec, state.port)
      const configChange = await writeConfigFiles(paths.configs, spec, state, image.includes('spock') ? 'spock' : 'pglogical', serverParameters)
      // Made from a backup and not adopted yet: no replication worker may start (see withoutReplicationLibraries).
      if (state.restoredFrom !== undefined) await writeServerConf(paths.configs, withoutReplicationLibraries(new Map(Object.entries(configChange.applied.settings))))
      await this.records.write(state)

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
        network: await ensureNetwork(this.docker, state.databaseId, role),
        extraLabels: spec.swarm?.extraLabels ?? {},
        ...(spec.swarm?.extraVolumes === undefined ? {} : { extraVolumes: spec.swarm.extraVolumes })
      }
      const deferRestart = spec.deferRestart === true
      // A running task whose spec changed is replaced (a restart) unless the restart is deferred.
      const running = await this.runningTaskHash(state.instanceId, role)
      const deferTask = deferRestart && running !== undefined && running !== specHash(input)
      const replaced = deferTask ? false : role.manager ? await this.ensureService(input, role, state) : await this.ensureContainer(input, state)
      if (deferTask) {
        if (state.pendingTask !== true) this.log.info({ instanceId: state.instanceId, image }, 'task change written; it waits for its restart')
        state.pendingTask = true
        // The running server keeps its port until the task is replaced (the admin socket is named after it).
        if (runningPort !== undefined) state.port = runningPort
      } else {
        delete state.pendingTask
      }
      await this.waitReady(state, deferTask ? undefined : specHash(input))
      if (!replaced) {
        const waiting = await applyConfigChange(state.instanceId, configChange, this.admin(paths, state), async () => { await this.restart(paths, state) }, this.log, deferRestart)
        if (waiting.length > 0) state.pendingRestart = true
        else if (state.pendingRestart === true && !deferRestart) await this.restart(paths, state)
      } else {
        delete state.pendingRestart
      }
      state.appliedSettings = configChange.applied.settings
      state.appliedAuth = configChange.applied.auth
      await this.records.write(state)
      if (state.restoredFrom !== undefined) await this.adoptBootstrapped(paths, state)
      const status = await this.inspect(paths, state)
      const password = this.password()
      if (status.role === 'primary' && password !== undefined) {
        // Replicas get it through physical replication; pglogical peers are primaries, each setting its own.
        await this.admin(paths, state)('postgres', async client => { await ensureSuperuserPassword(client, password) })
      }
      if (spec.database !== undefined && status.role === 'primary') {
        await setupPrimaryDatabase(state, spec.database, this.admin(paths, state), async r => { await this.records.write(r) })
      }
      if (status.role === 'primary') await this.ensureStanza(paths, state, spec)
      return status
    })
  }

  /** One pgBackRest backup inside the primary's container (see Orchestrator.backup). */
  async backup (instanceId: string, run: BackupRun, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    const paths = this.paths(instanceId)
    const containerId = await this.locks.run(instanceId, async () => {
      const state = await this.records.read(instanceId)
      if (state === undefined) throw new NotFoundError(`instance ${instanceId} not found`)
      if (await pgbackrestConfHash(paths.data) === undefined) throw new InvalidInputError('backups are not configured for this database node')
      // A replica promoted a moment ago may not have had its ensure yet: its stanza is checked first.
      return await this.ensureStanza(paths, state, undefined)
    })
    // Not under the instance's lock: a backup takes as long as it takes, and pgBackRest's own lock keeps it alone.
    await backupIn(this.docker, containerId, run, onLine, signal)
  }

  /**
   * In-place restore (see Orchestrator.restore): the instance's task stopped, `pgbackrest restore` in a one-shot
   * container into its emptied pgdata, then started without archiving and without the replication libraries until
   * its recovery has ended and it is adopted; then restarted with its settings. The config files live outside pgdata
   * (the configs mount), so nothing needs keeping aside; run again after an interruption, it restores again.
   */
  async restore (instanceId: string, restore: InstanceRestore, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    const paths = this.paths(instanceId)
    const state = await this.locks.run(instanceId, async () => {
      const state = await this.records.read(instanceId)
      if (state === undefined) throw new NotFoundError(`instance ${instanceId} not found`)
      state.desiredRunning = false
      delete state.stanzaChecked
      await this.records.write(state)
      await this.setRunning(state, false)
      await waitGone(this.docker, instanceId)
      await writeRestoreConf(paths.data, restore, state.port)
      return state
    })
    // Not under the instance's lock, as a backup: it takes as long as it takes, and the server is stopped meanwhile.
    await restoreIn(this.docker, this.restoreInput(paths, state), restore, onLine, signal)
    await this.locks.run(instanceId, async () => {
      const settings = restoredInPlaceSettings(state.appliedSettings)
      await writeServerConf(paths.configs, withoutReplicationLibraries(settings))
      state.appliedSettings = Object.fromEntries(settings)
      state.desiredRunning = true
      await this.records.write(state)
      await this.restart(paths, state)
      await this.waitRecoveryEnded(paths, state, signal)
      await adoptRestoredDatabase(this.admin(paths, state), restore.sourceDatabaseName, restore.databaseName)
      await writeServerConf(paths.configs, settings)
      await this.restart(paths, state)
      await removeRestoreConf(paths.data)
      this.log.info({ instanceId, source: `${restore.sourceDatabaseId}/${restore.sourceNodeName}` }, 'restored')
    })
  }

  private restoreInput (paths: Paths, state: InstanceRecord): Parameters<typeof restoreIn>[1] {
    if (state.image === undefined) throw new Error(`instance ${state.instanceId} has no recorded image; ensure it first`)
    return {
      instanceId: state.instanceId, databaseId: state.databaseId, hostId: this.options.hostId, image: state.image,
      postgresMajor: state.postgresMajor, dataDir: paths.data, extraVolumes: state.extraVolumes ?? []
    }
  }

  /**
   * A new primary made from a pgBackRest backup instead of initdb (create-from-backup, add-node-from-backup): the
   * restore container fills pgdata before the instance's own container first starts, so its start script finds a
   * data directory. Its output goes to the daemon's log.
   */
  private async bootstrapFromBackup (paths: Paths, state: InstanceRecord, restore: InstanceRestore, major: number): Promise<void> {
    const started = Date.now()
    state.restoredFrom = { sourceDatabaseName: restore.sourceDatabaseName, databaseName: restore.databaseName, dataRestored: false }
    await this.records.write(state)
    await writeRestoreConf(paths.data, restore, state.port)
    const lines: string[] = []
    await restoreIn(this.docker, { ...this.restoreInput(paths, state), postgresMajor: major }, restore, line => { lines.push(line) })
    this.log.info({ instanceId: state.instanceId, source: `${restore.sourceDatabaseId}/${restore.sourceNodeName}`, ms: Date.now() - started, last: lines.at(-1) }, 'restored from a backup')
    // The backup holds its source's scripts' work; this node must not run them again.
    state.scriptsDone = { postInit: true, postDatabaseCreate: true }
    state.restoredFrom.dataRestored = true
    await this.records.write(state)
  }

  /** A server made from a backup, once its recovery has ended: this database's own (adoptRestoredDatabase). */
  private async adoptBootstrapped (paths: Paths, state: InstanceRecord): Promise<void> {
    const from = state.restoredFrom
    if (from === undefined) return
    await this.waitRecoveryEnded(paths, state, undefined)
    await adoptRestoredDatabase(this.admin(paths, state), from.sourceDatabaseName, from.databaseName)
    await writeServerConf(paths.configs, new Map(Object.entries(state.appliedSettings)))
    await this.restart(paths, state)
    await removeRestoreConf(paths.data)
    delete state.restoredFrom
    await this.records.write(state)
    this.log.info({ instanceId: state.instanceId }, 'restored server adopted')
  }

  /** Until the restored server has reached its target and been promoted (it accepts connections while it replays). */
  private async waitRecoveryEnded (paths: Paths, state: InstanceRecord, signal: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + RECOVERY_TIMEOUT_MS
    for (;;) {
      signal?.throwIfAborted()
      const inRecovery = await this.admin(paths, state)('postgres', async client => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r)
        .catch(() => true)
      if (inRecovery === false) return
      if (Date.now() > deadline) {
        const problem = await taskProblem(this.docker, state.instanceId)
        throw new Error(`the restored server is still in recovery (a recovery target with target-action=pause waits for pg_wal_replay_resume())${problem === undefined ? '' : `; ${problem}`}`)
      }
      await delay(500)
    }
  }

  /**
   * On a primary with backups configured: the stanza created and checked once per config (both idempotent, so a new
   * primary of the node runs them again). `spec` undefined: as configured now (a backup asks). Returns the running
   * container.
   */
  private async ensureStanza (paths: Paths, state: InstanceRecord, spec: InstanceSpec | undefined): Promise<string> {
    const running = (await instanceContainers(this.docker, state.instanceId)).find(c => c.State === 'running')
    if (running === undefined) throw new Error(`instance ${state.instanceId} has no running container`)
    const hash = await pgbackrestConfHash(paths.data)
    if (hash === undefined || (spec !== undefined && spec.backup === undefined)) {
      if (state.stanzaChecked !== undefined) {
        delete state.stanzaChecked
        await this.records.write(state)
      }
      return running.Id
    }
    if (state.stanzaChecked === hash) return running.Id
    const started = Date.now()
    await ensureStanzaIn(this.docker, running.Id, paths.data)
    state.stanzaChecked = hash
    await this.records.write(state)
    this.log.info({ instanceId: state.instanceId, ms: Date.now() - started }, 'pgBackRest stanza created and checked')
    return running.Id
  }

  private password (): string | undefined {
    return this.options.superuserPassword?.()
  }

  /**
   * The superuser's password file in the instance's data mount (CONTAINER_PATHS.passfile, PGPASSFILE of the
   * postmaster and of the clone): written 0600 by root here, handed to the image's postgres user by the container's
   * PREPARE step. Left alone when unchanged, so a running server's copy keeps its owner.
   */
  private async writePassfile (paths: { data: string }): Promise<void> {
    const password = this.password()
    if (password === undefined) return
    const file = join(paths.data, PASSFILE_NAME)
    const content = superuserPassfile(password)
    if (await readFile(file, 'utf8').catch(() => '') === content) return
    await writeFile(file, content, { mode: 0o600 })
    await chmod(file, 0o600)
  }

  async startInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.records.write(state)
      await this.setRunning(state, true)
      await this.waitReady(state, undefined)
      return await this.inspect(paths, state)
    })
  }

  async stopInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = false
      await this.records.write(state)
      await this.setRunning(state, false)
      await waitGone(this.docker, state.instanceId)
      return await this.inspect(paths, state)
    })
  }

  async restartInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.records.write(state)
      await this.restart(paths, state)
      return await this.inspect(paths, state)
    })
  }

  async promote (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      await promoteRecord(state, this.admin(paths, state), async r => {
        delete r.cloned
        await this.records.write(r)
      }, { log: this.log, password: this.password() })
      this.log.info({ instanceId }, 'promoted')
      return await this.inspect(paths, state)
    })
  }

  async removeInstance (instanceId: string): Promise<void> {
    assertInstanceId(instanceId)
    await this.locks.run(instanceId, async () => {
      const paths = this.paths(instanceId)
      const state = await this.records.read(instanceId)
      if ((await swarmRole(this.docker)).manager) {
        await this.docker.getService(serviceName(instanceId)).remove().catch((err: unknown) => { if (!isNotFound(err)) throw err })
      }
      // A worker's container, or a service task the manager has not stopped yet: the data must not be in use.
      for (const container of await instanceContainers(this.docker, instanceId)) {
        await this.docker.getContainer(container.Id).remove({ force: true }).catch((err: unknown) => { if (!isNotFound(err)) throw err })
      }
      await removeCloneContainer(this.docker, instanceId)
      await waitGone(this.docker, instanceId)
      if (state?.standbyOf !== undefined) await dropReplicaSlot(state.standbyOf, this.log, this.password())
      await rm(paths.dir, { recursive: true, force: true })
      if (!paths.socket.startsWith(paths.dir)) await rm(paths.socket, { recursive: true, force: true })
      this.seenPids.delete(instanceId)
      if (state !== undefined) {
        this.records.releasePort(state.port)
        await removeNetworkIfUnused(this.docker, state.databaseId, this.log)
      }
      this.log.info({ instanceId }, 'removed')
    })
  }

  async status (instanceId: string): Promise<InstanceStatus | undefined> {
    return await this.records.status(instanceId, async state => await this.inspect(this.paths(state.instanceId), state))
  }

  async list (): Promise<InstanceStatus[]> {
    return await this.records.list(async state => await this.inspect(this.paths(state.instanceId), state))
  }

  // ---- docker ------------------------------------------------------------------------------------------------

  /** Creates or updates the service; true when Swarm (re)creates the task because of it. */
  private async ensureService (input: TaskInput, role: SwarmRole, state: InstanceRecord): Promise<boolean> {
    const wanted = serviceSpec(input, role.nodeId, 1, state.forceUpdate)
    const existing = await this.serviceOf(input.instanceId)
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

  /** The instance's service as Swarm has it; undefined when there is none. */
  private async serviceOf (instanceId: string): Promise<Docker.Service | undefined> {
    return await this.docker.getService(serviceName(instanceId)).inspect().catch((err: unknown) => {
      if (isNotFound(err)) return undefined
      throw err
    }) as Docker.Service | undefined
  }

  /** The spec hash of the instance's running task (service or worker container); undefined when none runs. */
  private async runningTaskHash (instanceId: string, role: SwarmRole): Promise<string | undefined> {
    if (role.manager) {
      const service = await this.serviceOf(instanceId)
      if (service?.Spec?.Mode?.Replicated?.Replicas !== 1) return undefined
      return service.Spec.Labels?.[LABELS.specHash]
    }
    return (await instanceContainers(this.docker, instanceId)).find(c => c.State === 'running')?.Labels[LABELS.specHash]
  }

  /** On a worker: a plain container, replaced when its spec changed. */
  private async ensureContainer (input: TaskInput, state: InstanceRecord): Promise<boolean> {
    const hash = specHash(input)
    const existing = await instanceContainers(this.docker, input.instanceId)
    const current = existing.find(c => c.Labels[LABELS.specHash] === hash)
    for (const stale of existing.filter(c => c !== current)) await this.docker.getContainer(stale.Id).remove({ force: true })
    if (current !== undefined) {
      if (current.State === 'running') return false
      await this.docker.getContainer(current.Id).start()
      return true
    }
    if (existing.length > 0) await waitGone(this.docker, input.instanceId)
    const container = await this.docker.createContainer(containerSpec(input))
    await container.start()
    this.log.info({ instanceId: input.instanceId, image: input.image, port: input.port, forceUpdate: state.forceUpdate }, 'container created (worker host)')
    return true
  }

  private async setRunning (state: InstanceRecord, running: boolean): Promise<void> {
    const role = await swarmRole(this.docker)
    if (role.manager) {
      const service = await this.docker.getService(serviceName(state.instanceId)).inspect() as Docker.Service
      const spec = service.Spec ?? {}
      await this.docker.getService(service.ID).update({
        _query: { version: service.Version?.Index }, _body: { ...spec, Mode: { Replicated: { Replicas: running ? 1 : 0 } } }
      })
      return
    }
    for (const c of await instanceContainers(this.docker, state.instanceId)) {
      const container = this.docker.getContainer(c.Id)
      if (running && c.State !== 'running') await container.start()
      if (!running && c.State === 'running') await container.stop()
    }
  }

  /** A new task (service) or a restarted container (worker), then wait until it accepts connections. */
  private async restart (paths: Paths, state: InstanceRecord): Promise<void> {
    const before = (await instanceContainers(this.docker, state.instanceId)).find(c => c.State === 'running')
    const role = await swarmRole(this.docker)
    if (role.manager) {
      state.forceUpdate++
      await this.records.write(state)
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
    // The settings that waited for a restart are in effect; a pending task change is not (the same task spec ran).
    delete state.pendingRestart
    await this.records.write(state)
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
      const running = (await instanceContainers(this.docker, state.instanceId)).find(c =>
        c.State === 'running' && c.Id !== notId && (hash === undefined || c.Labels[LABELS.specHash] === hash))
      if (running !== undefined) {
        try {
          await this.admin(paths, state)('postgres', async client => { await client.query('SELECT 1') })
          return
        } catch (err) {
          last = `not accepting connections yet: ${(err as Error).message}`
        }
      } else {
        last = await taskProblem(this.docker, state.instanceId) ?? 'waiting for its container'
      }
      if (Date.now() > deadline) throw new Error(`instance ${state.instanceId} did not become ready: ${last}`)
      await delay(250)
    }
  }

  // ---- observed state ----------------------------------------------------------------------------------------

  /** From Docker (the instance's container and its health) and from Postgres itself (over the socket). */
  private async inspect (paths: Paths, state: InstanceRecord): Promise<InstanceStatus> {
    const base = statusBase(state, paths.socket)
    let running: Docker.ContainerInfo | undefined
    try {
      running = (await instanceContainers(this.docker, state.instanceId)).find(c => c.State === 'running')
    } catch (err) {
      this.log.debug({ instanceId: state.instanceId, err: (err as Error).message }, 'docker not reachable')
      return { ...base, state: state.desiredRunning ? 'crashed' : 'stopped' }
    }
    if (running === undefined) return { ...base, state: state.desiredRunning ? 'crashed' : 'stopped' }
    const container = await this.docker.getContainer(running.Id).inspect().catch(() => undefined)
    const pid = container?.State.Pid
    try {
      const server = await this.admin(paths, state)('postgres', serverRole)
      const pendingRestart = state.pendingRestart === true || state.pendingTask === true
      return { ...base, state: 'running', ...server, ...(pid === undefined ? {} : { pid }), ...(pendingRestart ? { pendingRestart } : {}) }
    } catch {
      // Not accepting connections: still starting, unless Docker's health check has given up on it.
      const unhealthy = container?.State.Health?.Status === 'unhealthy'
      return { ...base, state: unhealthy ? 'crashed' : 'starting', ...(pid === undefined ? {} : { pid }) }
    }
  }

  /** Docker restarts containers by itself; this only reports what it saw, so a reconciler can look again. */
  private async monitor (): Promise<void> {
    for (const id of await this.records.ids()) {
      if (this.locks.busy(id)) continue
      const state = await this.records.read(id)
      if (state === undefined || !state.desiredRunning) continue
      const running = await instanceContainers(this.docker, id).then(cs => cs.find(c => c.State === 'running'), () => undefined)
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
    return { dir, data: join(dir, 'data'), configs: join(dir, 'configs'), socket }
  }

  private async withExisting<T> (instanceId: string, operation: (paths: Paths, state: InstanceRecord) => Promise<T>): Promise<T> {
    return await this.records.withExisting(instanceId, async state => await operation(this.paths(instanceId), state))
  }

  /** Admin connections over the socket in the instance's bind mount. */
  private admin (paths: Paths, state: InstanceRecord): AdminConnect {
    return async (database, work) => {
      if (paths.socket.length > MAX_SOCKET_PATH) throw new Error(`data dir ${this.options.dataDir} is too long for a unix socket path`)
      return await withAdminConnection({ host: paths.socket, port: state.port, database }, this.log, work)
    }
  }
}
