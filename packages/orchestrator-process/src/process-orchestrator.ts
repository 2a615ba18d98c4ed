import { createHash } from 'node:crypto'
import { chmod, chown, mkdir, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { dirname, join } from 'node:path'
import {
  adoptRestoredDatabase, restoredInPlaceSettings, withoutReplicationLibraries, type AdminConnect, applyConfigChange, archiveCommand, backupArgs, pgbackrestArgs, renderPgbackrestConf, renderRestoreConf, restoreArgs, assertInstanceId, assertInstanceSpec, basebackupArgs, changedSettings, type ConfigChange,
  desiredSettings, dropReplicaSlot, followPrimary, type InstanceEvent, InstanceEvents, InstanceRecords, type InstanceStatus,
  type Orchestrator, promoteRecord, renderHba, renderIdent, renderManagedConf, replicaSlotExists, type ReplicationLibrary, serverRole,
  setupPrimaryDatabase, type StandbyOf, statusBase, ensureSuperuserPassword, superuserPassfile, type SuperuserPassword, withAdminConnection
} from '@pgmesh/orchestrator'
import { type BackupRun, compareVersions, type InstanceRestore, type InstanceSpec, InvalidInputError, NotFoundError, SYSTEM_SUPERUSER } from '@pgmesh/model'
import type { Logger } from 'pino'
import { binDir, DEBIAN_POSTGRES_ROOT, installedVersion, replicationLibrary, resolveMajor, serverParameters } from './binaries.js'
import { INCLUDE_LINE, InstancePaths, MANAGED_CONF_FILE, type ProcessInstanceRecord as InstanceRecord } from './instance-store.js'
import { isProcessAlive, postgresOsUser, type RunAs, runCommand, stopLeftover, streamCommand } from './system.js'

export interface ProcessOrchestratorOptions {
  /** Instances live under `<dataDir>/instances/<instanceId>/`. Every ancestor must be traversable by `postgres`. */
  dataDir: string
  logger: Logger
  /** Where the per-major `bin/` and `lib/` directories are; default Debian's /usr/lib/postgresql. */
  postgresRoot?: string
  /** How often supervision looks at the postmasters; default 300 ms. */
  superviseIntervalMs?: number
  /**
   * The control plane's superuser password for peers' instances over TCP (derived from the cluster's data key); none
   * before this host has the key, or in a test of one host.
   */
  superuserPassword?: SuperuserPassword
  /** The pgBackRest executable (archive_command runs it by this path); default /usr/bin/pgbackrest. */
  pgbackrest?: string
}

interface Supervision { lastPid: number | undefined, attempt: number, nextAttemptAt: number, exitReported: boolean }

const RESTART_BACKOFF_MS = { first: 500, max: 30_000 }
/** How long a restored server may take to replay WAL up to its target and promote. */
const RECOVERY_TIMEOUT_MS = 30 * 60_000
/** The instance's own files, kept across a restore (the backup holds the source's). */
const KEPT_FILES = ['postgresql.conf', MANAGED_CONF_FILE, 'pg_hba.conf', 'pg_ident.conf'] as const

/** The startup log's two lines saying the logging collector takes over: noise in an error. */
const COLLECTOR_TAKES_OVER = /LOG: {2}redirecting log output to logging collector process|HINT: {2}Future log output will appear in directory/

/**
 * The last `lines` the server wrote since `since`: the startup log (failures before the logging collector starts),
 * then the collector's newest log from its last "starting PostgreSQL" line on — a port already in use or a bad
 * setting is reported after the collector took over, so the startup log only says where to look.
 */
async function serverSaid (paths: InstancePaths, since: number, lines: number): Promise<string> {
  const startup = (await readFile(paths.startupLog, 'utf8').catch(() => '')).split('\n').filter(l => l !== '' && !COLLECTOR_TAKES_OVER.test(l))
  const logs = (await readdir(paths.logDir).catch(() => [] as string[])).filter(name => name.startsWith('postgresql-') && name.endsWith('.log'))
  const dated = await Promise.all(logs.map(async name => ({ name, mtime: (await stat(join(paths.logDir, name)).catch(() => undefined))?.mtimeMs ?? 0 })))
  const newest = dated.sort((a, b) => b.mtime - a.mtime)[0]
  let collector: string[] = []
  if (newest !== undefined && newest.mtime >= since) {
    const all = (await readFile(join(paths.logDir, newest.name), 'utf8').catch(() => '')).split('\n').filter(l => l !== '')
    collector = all.slice(all.findLastIndex(l => l.includes('LOG:  starting PostgreSQL')) + 1)
  }
  return [...startup, ...collector].slice(-lines).join('\n')
}

/**
 * The embedded default orchestrator: each instance is a PostgreSQL server run from the host's own binaries with
 * pg_ctl, supervised by polling its postmaster (a killed postmaster is restarted with backoff and reported through
 * onEvent). All operations on one instance are serialised; different instances proceed in parallel.
 */
export class ProcessOrchestrator implements Orchestrator {
  private readonly instancesDir: string
  private readonly records: InstanceRecords<InstanceRecord>
  private readonly locks
  private readonly root: string
  private readonly log: Logger
  private readonly events: InstanceEvents
  private readonly supervised = new Map<string, Supervision>()
  private timer: NodeJS.Timeout | undefined
  private readonly superuserPassword: SuperuserPassword
  private readonly pgbackrest: string

  private constructor (options: ProcessOrchestratorOptions, private readonly runAs: RunAs | undefined) {
    this.instancesDir = join(options.dataDir, 'instances')
    this.records = new InstanceRecords(this.instancesDir)
    this.locks = this.records.locks
    this.root = options.postgresRoot ?? DEBIAN_POSTGRES_ROOT
    this.log = options.logger.child({ component: 'orchestrator-process' })
    this.events = new InstanceEvents(this.log)
    this.superuserPassword = options.superuserPassword ?? (() => undefined)
    this.pgbackrest = options.pgbackrest ?? '/usr/bin/pgbackrest'
  }

  /**
   * Prepares the data dir and adopts the instances that run (supervised from now on: restarted if they die). One found
   * down is left to the caller's next ensureInstance: after a daemon restart the reconciler decides first whether it
   * should run at all (its host may have been removed from the cluster meanwhile, its primary fenced).
   */
  static async open (options: ProcessOrchestratorOptions): Promise<ProcessOrchestrator> {
    const orchestrator = new ProcessOrchestrator(options, await postgresOsUser())
    await orchestrator.prepareInstancesDir()
    for (const instanceId of await orchestrator.records.ids()) {
      const state = await orchestrator.records.read(instanceId)
      if (state?.desiredRunning !== true || !state.initialized) continue
      if (await orchestrator.runningPid(orchestrator.paths(instanceId)) !== undefined) orchestrator.supervise(instanceId)
      else orchestrator.log.info({ instanceId }, 'found down: started again once the reconciler ensures it')
    }
    orchestrator.timer = setInterval(() => { orchestrator.superviseAll() }, options.superviseIntervalMs ?? 300)
    orchestrator.timer.unref()
    return orchestrator
  }

  /** Stops supervising; the instances keep running (a later open() adopts them). */
  async close (): Promise<void> {
    clearInterval(this.timer)
    this.supervised.clear()
    await this.locks.idle()
  }

  onEvent (listener: (event: InstanceEvent) => void): () => void {
    return this.events.on(listener)
  }

  async ensureInstance (spec: InstanceSpec): Promise<InstanceStatus> {
    assertInstanceSpec(spec)
    return await this.locks.run(spec.instanceId, async () => {
      const paths = this.paths(spec.instanceId)
      const previous = await this.records.read(spec.instanceId)
      // Without an explicit version an existing instance keeps its major, even after a newer one gets installed.
      const major = spec.postgresVersion === undefined && previous !== undefined
        ? previous.postgresMajor
        : await resolveMajor(this.root, spec.postgresVersion)
      const runningPort = previous?.port
      const state = await this.records.prepare(spec, previous, major, base => ({ ...base, initialized: false }))
      const running = await this.runningPid(paths) !== undefined
      const deferRestart = spec.deferRestart === true
      // A new port takes a restart: until then the server, its record and its config keep the old one.
      const portMoves = running && runningPort !== undefined && runningPort !== state.port
      if (portMoves && deferRestart) state.port = runningPort
      await this.prepareInstanceDirs(paths)
      await this.writePassfile(paths)
      await this.records.write(state)

      await this.ensureDataDirectory(paths, state, spec)

      // Read once per ensure: what the server parameters are asked of, and what a running server is compared with.
      const installed = await installedVersion(this.root, major)
      const change = await this.writeConfig(paths, state, spec, await replicationLibrary(this.root, major), installed)
      await this.records.write(state)
      if (!running) {
        // Made from a backup and not adopted yet: no replication worker may start (see withoutReplicationLibraries).
        if (state.restoredFrom !== undefined) await this.writePostgresFile(join(paths.pgdata, MANAGED_CONF_FILE), renderManagedConf(withoutReplicationLibraries(new Map(Object.entries(state.appliedSettings)))))
        await this.startPostgres(paths, state)
      } else if (portMoves && !deferRestart) {
        // The admin session goes through the socket named after the port, which the old server does not have.
        await this.restartPostgres(paths, state)
      } else {
        const waiting = await applyConfigChange(state.instanceId, change, this.admin(paths, state), async () => { await this.restartPostgres(paths, state) }, this.log, deferRestart)
        // A package upgrade of the minor version takes effect at a restart: one more change that waits for its turn.
        const upgraded = await this.newerBinaries(paths, state, installed)
        if (waiting.length > 0 || (portMoves && deferRestart) || (upgraded && deferRestart)) state.pendingRestart = true
        else if ((state.pendingRestart === true || upgraded) && !deferRestart) await this.restartPostgres(paths, state)
      }
      await this.records.write(state)
      if (state.restoredFrom !== undefined) await this.adoptBootstrapped(paths, state)
      this.supervise(spec.instanceId)

      const status = await this.inspect(paths, state)
      const password = this.superuserPassword()
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

  async backup (instanceId: string, run: BackupRun, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    const paths = this.paths(instanceId)
    await this.locks.run(instanceId, async () => {
      const state = await this.records.read(instanceId)
      if (state === undefined || !state.initialized) throw new NotFoundError(`instance ${instanceId} not found`)
      if (await readFile(paths.pgbackrestConf, 'utf8').catch(() => undefined) === undefined) throw new InvalidInputError('backups are not configured for this database node')
      await this.stopLeftoverPgbackrest(paths, onLine)
      // A replica promoted a moment ago may not have had its ensure yet: its stanza is checked first.
      await this.ensureStanza(paths, state, { backup: true })
    })
    // Not under the instance's lock: a backup takes as long as it takes, and pgBackRest's own lock keeps it alone.
    await streamCommand(this.pgbackrest, backupArgs(paths.pgbackrestConf, run), { runAs: this.runAs, cwd: paths.dir, onLine, pidFile: this.pgbackrestPidFile(paths), ...(signal === undefined ? {} : { signal }) })
  }

  /**
   * In-place restore (see Orchestrator.restore). The instance's own config files are copied aside first, into its
   * directory, so a restore interrupted after its data directory was emptied still has them when it runs again.
   */
  async restore (instanceId: string, restore: InstanceRestore, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    const paths = this.paths(instanceId)
    const keptDir = join(paths.dir, 'restore-kept')
    const restoreConf = join(paths.dir, 'pgbackrest.restore.conf')
    const state = await this.locks.run(instanceId, async () => {
      const state = await this.records.read(instanceId)
      if (state === undefined || !state.initialized) throw new NotFoundError(`instance ${instanceId} not found`)
      // A restore left running by a daemon that died would go on writing into the data directory emptied below.
      await this.stopLeftoverPgbackrest(paths, onLine)
      // Not supervised meanwhile: a stopped server is not started again behind the restore's back.
      state.desiredRunning = false
      delete state.stanzaChecked
      await this.records.write(state)
      await this.stopPostgres(paths, state)
      if (await stat(join(keptDir, 'done')).catch(() => undefined) === undefined) {
        await mkdir(keptDir, { recursive: true, mode: 0o700 })
        for (const file of KEPT_FILES) await writeFile(join(keptDir, file), await readFile(join(paths.pgdata, file), 'utf8'), { mode: 0o600 })
        await writeFile(join(keptDir, 'done'), '', { mode: 0o600 })
      }
      await mkdir(paths.pgbackrestLockDir, { recursive: true, mode: 0o700 })
      await this.handToPostgres(paths.pgbackrestLockDir)
      await this.writePostgresFile(restoreConf, renderRestoreConf(restore, {
        config: restoreConf, pgdata: paths.pgdata, socketDir: paths.socketDir, port: state.port, lockDir: paths.pgbackrestLockDir, logDir: paths.logDir
      }))
      await rm(paths.pgdata, { recursive: true, force: true })
      await mkdir(paths.pgdata, { mode: 0o700 })
      await this.handToPostgres(paths.pgdata)
      return state
    })
    // Not under the instance's lock, as a backup: it takes as long as it takes, and the server is stopped meanwhile.
    await streamCommand(this.pgbackrest, restoreArgs(restoreConf, restore.options), { runAs: this.runAs, cwd: paths.dir, onLine, pidFile: this.pgbackrestPidFile(paths), ...(signal === undefined ? {} : { signal }) })
    await this.locks.run(instanceId, async () => {
      for (const file of KEPT_FILES.filter(f => f !== MANAGED_CONF_FILE)) await this.writePostgresFile(join(paths.pgdata, file), await readFile(join(keptDir, file), 'utf8'))
      const settings = restoredInPlaceSettings(state.appliedSettings)
      // No replication worker may start before the backup's replication state is gone (withoutReplicationLibraries).
      await this.writePostgresFile(join(paths.pgdata, MANAGED_CONF_FILE), renderManagedConf(withoutReplicationLibraries(settings)))
      state.appliedSettings = Object.fromEntries(settings)
      state.desiredRunning = true
      await this.records.write(state)
      await this.startPostgres(paths, state)
      await this.waitRecoveryEnded(paths, state, signal)
      await adoptRestoredDatabase(this.admin(paths, state), restore.sourceDatabaseName, restore.databaseName)
      await this.writePostgresFile(join(paths.pgdata, MANAGED_CONF_FILE), renderManagedConf(settings))
      await this.restartPostgres(paths, state)
      await rm(restoreConf, { force: true })
      await rm(keptDir, { recursive: true, force: true })
      this.supervise(instanceId)
      this.log.info({ instanceId, source: `${restore.sourceDatabaseId}/${restore.sourceNodeName}` }, 'restored')
    })
  }

  /** Where the pid of the instance's running pgBackRest backup or restore is (root's, 0600). */
  private pgbackrestPidFile (paths: InstancePaths): string {
    return join(paths.dir, 'pgbackrest.pid')
  }

  /**
   * pgBackRest's locks are flocks, released by the kernel when their holder dies; what outlives a daemon killed in
   * the middle is the pgbackrest it started, still running and holding the lock, so every later backup or restore
   * would fail on it. It is stopped (process group, SIGTERM then SIGKILL), and the task log says so: the backup that
   * follows resumes or cleans up its partial backup, a restore starts again from an empty data directory.
   */
  private async stopLeftoverPgbackrest (paths: InstancePaths, onLine: (line: string) => void): Promise<void> {
    const pid = await stopLeftover(this.pgbackrestPidFile(paths), paths.dir)
    if (pid === undefined) return
    this.log.warn({ dir: paths.dir, pid }, 'stopped a pgBackRest process left running by an earlier run of this daemon')
    onLine(`pgmesh: stopped pgBackRest (pid ${pid}) left running by an earlier run of this daemon; its lock is free again`)
  }

  /** Until the restored server has reached its target and been promoted (it accepts connections while it replays). */
  private async waitRecoveryEnded (paths: InstancePaths, state: InstanceRecord, signal: AbortSignal | undefined): Promise<void> {
    const deadline = Date.now() + RECOVERY_TIMEOUT_MS
    for (;;) {
      signal?.throwIfAborted()
      if (await this.runningPid(paths) === undefined) {
        throw new Error(`the restored server stopped during recovery; the server said:\n${await serverSaid(paths, deadline - RECOVERY_TIMEOUT_MS, 10)}`)
      }
      const inRecovery = await this.admin(paths, state)('postgres', async client => (await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')).rows[0]?.r)
        .catch(() => true)
      if (inRecovery === false) return
      if (Date.now() > deadline) throw new Error('the restored server is still in recovery (a recovery target with target-action=pause waits for pg_wal_replay_resume())')
      await sleep(500)
    }
  }

  /**
   * On a primary with backups configured: the stanza created and checked (WAL reaches the repositories) once per
   * config; both are idempotent, so a new primary of the node simply runs them again.
   */
  private async ensureStanza (paths: InstancePaths, state: InstanceRecord, spec: { backup?: unknown }): Promise<void> {
    if (spec.backup === undefined) {
      if (state.stanzaChecked !== undefined) {
        delete state.stanzaChecked
        await this.records.write(state)
      }
      return
    }
    const config = await readFile(paths.pgbackrestConf, 'utf8')
    const hash = createHash('sha256').update(config).digest('hex').slice(0, 16)
    if (state.stanzaChecked === hash) return
    const started = Date.now()
    const run = async (command: string): Promise<void> => {
      await runCommand(this.pgbackrest, pgbackrestArgs(paths.pgbackrestConf, command, command === 'stanza-create' ? ['--io-timeout=10'] : []), { runAs: this.runAs, cwd: paths.dir })
    }
    await run('stanza-create')
    await run('check')
    state.stanzaChecked = hash
    await this.records.write(state)
    this.log.info({ instanceId: state.instanceId, ms: Date.now() - started }, 'pgBackRest stanza created and checked')
  }

  async startInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.records.write(state)
      if (await this.runningPid(paths) === undefined) await this.startPostgres(paths, state)
      this.supervise(instanceId)
      return await this.inspect(paths, state)
    })
  }

  async stopInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = false
      await this.records.write(state)
      await this.stopPostgres(paths, state)
      return await this.inspect(paths, state)
    })
  }

  async restartInstance (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      state.desiredRunning = true
      await this.records.write(state)
      await this.restartPostgres(paths, state)
      this.supervise(instanceId)
      return await this.inspect(paths, state)
    })
  }

  async promote (instanceId: string): Promise<InstanceStatus> {
    return await this.withExisting(instanceId, async (paths, state) => {
      await promoteRecord(state, this.admin(paths, state), async r => { await this.records.write(r) }, { log: this.log, password: this.superuserPassword() })
      this.log.info({ instanceId }, 'promoted')
      return await this.inspect(paths, state)
    })
  }

  async removeInstance (instanceId: string): Promise<void> {
    assertInstanceId(instanceId)
    await this.locks.run(instanceId, async () => {
      const paths = this.paths(instanceId)
      this.supervised.delete(instanceId)
      const state = await this.records.read(instanceId)
      if (state !== undefined) {
        state.desiredRunning = false
        await this.records.write(state)
        await this.stopPostgres(paths, state)
        this.records.releasePort(state.port)
        if (state.standbyOf !== undefined) await dropReplicaSlot(state.standbyOf, this.log, this.superuserPassword())
      }
      await rm(paths.dir, { recursive: true, force: true })
      await rm(paths.socketDir, { recursive: true, force: true })
      this.log.info({ instanceId }, 'removed')
    })
  }

  async status (instanceId: string): Promise<InstanceStatus | undefined> {
    return await this.records.status(instanceId, async state => await this.inspect(this.paths(state.instanceId), state))
  }

  async list (): Promise<InstanceStatus[]> {
    return await this.records.list(async state => await this.inspect(this.paths(state.instanceId), state))
  }

  private paths (instanceId: string): InstancePaths {
    return new InstancePaths(this.instancesDir, instanceId)
  }

  /** Only an instance whose data directory was made exists for start, stop, restart and promote. */
  private async withExisting<T> (instanceId: string, operation: (paths: InstancePaths, state: InstanceRecord) => Promise<T>): Promise<T> {
    return await this.records.withExisting(instanceId, async state => await operation(this.paths(instanceId), state), state => state.initialized)
  }

  // ---- supervision -------------------------------------------------------------------------------------------

  private supervise (instanceId: string): void {
    if (!this.supervised.has(instanceId)) {
      this.supervised.set(instanceId, { lastPid: undefined, attempt: 0, nextAttemptAt: 0, exitReported: false })
    }
  }

  private superviseAll (): void {
    for (const [instanceId, supervision] of this.supervised) {
      // An operation in progress owns the process right now; look again on the next tick.
      if (this.locks.busy(instanceId)) continue
      this.locks.run(instanceId, async () => { await this.superviseOne(instanceId, supervision) })
        .catch((err: unknown) => { this.log.error({ err, instanceId }, 'supervision check failed') })
    }
  }

  private async superviseOne (instanceId: string, supervision: Supervision): Promise<void> {
    const paths = this.paths(instanceId)
    const state = await this.records.read(instanceId)
    if (state === undefined || !state.desiredRunning || !state.initialized || !this.supervised.has(instanceId)) return
    const pid = await this.runningPid(paths)
    if (pid !== undefined) {
      supervision.lastPid = pid
      return
    }
    if (!supervision.exitReported) {
      supervision.exitReported = true
      // After a crash postmaster.pid still names the dead process (the last seen pid may predate a restart).
      const deadPid = await this.postmasterPid(paths) ?? supervision.lastPid ?? 0
      this.log.warn({ instanceId, pid: deadPid }, 'postmaster exited; restarting')
      this.events.emit({ type: 'exited', instanceId, pid: deadPid })
    }
    if (Date.now() < supervision.nextAttemptAt) return
    supervision.attempt++
    try {
      await this.startPostgres(paths, state)
      const restartedPid = await this.runningPid(paths) ?? 0
      this.log.info({ instanceId, pid: restartedPid, attempt: supervision.attempt }, 'postmaster restarted')
      this.events.emit({ type: 'restarted', instanceId, pid: restartedPid, attempt: supervision.attempt })
      Object.assign(supervision, { lastPid: restartedPid, attempt: 0, nextAttemptAt: 0, exitReported: false })
    } catch (err) {
      const retryInMs = Math.min(RESTART_BACKOFF_MS.first * 2 ** (supervision.attempt - 1), RESTART_BACKOFF_MS.max)
      supervision.nextAttemptAt = Date.now() + retryInMs
      this.log.error({ err, instanceId, attempt: supervision.attempt, retryInMs }, 'restart failed')
      this.events.emit({ type: 'restart_failed', instanceId, attempt: supervision.attempt, error: String(err), retryInMs })
    }
  }

  // ---- files and directories ---------------------------------------------------------------------------------

  private async prepareInstancesDir (): Promise<void> {
    await mkdir(this.instancesDir, { recursive: true, mode: 0o755 })
    if (this.runAs === undefined) return
    // The postgres OS user has to reach its instance directories through every ancestor.
    for (let dir = this.instancesDir; ; dir = dirname(dir)) {
      const info = await stat(dir)
      if ((info.mode & 0o001) === 0 && info.uid !== this.runAs.uid) {
        throw new Error(`${dir} is not traversable by the postgres OS user (chmod o+x ${dir}, or use another data dir)`)
      }
      if (dir === dirname(dir)) break
    }
  }

  /** Directories owned by the OS user Postgres runs as, private to it. */
  private async prepareInstanceDirs (paths: InstancePaths): Promise<void> {
    for (const dir of [paths.dir, paths.logDir, paths.socketDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 })
      await this.handToPostgres(dir)
    }
  }

  private async handToPostgres (path: string): Promise<void> {
    if (this.runAs !== undefined) await chown(path, this.runAs.uid, this.runAs.gid)
  }

  /** The superuser's password file, rewritten each ensure (the data key may have arrived since), or none yet. */
  private async writePassfile (paths: InstancePaths): Promise<void> {
    const password = this.superuserPassword()
    if (password !== undefined) await this.writePostgresFile(paths.passfile, superuserPassfile(password))
  }

  private async writePostgresFile (path: string, content: string): Promise<void> {
    await writeFile(path, content, { mode: 0o600 })
    await chmod(path, 0o600)
    await this.handToPostgres(path)
  }

  private async writeConfig (
    paths: InstancePaths, state: InstanceRecord, spec: InstanceSpec, library: ReplicationLibrary, installed: string
  ): Promise<ConfigChange> {
    const settings = desiredSettings({
      spec, port: state.port, socketDir: paths.socketDir, logDir: paths.logDir, library, standbyOf: state.standbyOf,
      serverParameters: await serverParameters(binDir(this.root, state.postgresMajor), installed),
      ...(spec.backup === undefined ? {} : { archiveCommand: archiveCommand(this.pgbackrest, paths.pgbackrestConf) })
    })
    await this.writePgbackrestConf(paths, state, spec)
    // postgresql.conf keeps initdb's tuned values; our include comes last, so its settings win.
    const mainConf = join(paths.pgdata, 'postgresql.conf')
    const main = await readFile(mainConf, 'utf8')
    if (!main.split('\n').includes(INCLUDE_LINE)) await this.writePostgresFile(mainConf, `${main.trimEnd()}\n${INCLUDE_LINE}\n`)
    await this.writePostgresFile(join(paths.pgdata, MANAGED_CONF_FILE), renderManagedConf(settings))

    let auth = false
    for (const [file, content] of [['pg_hba.conf', renderHba(spec)], ['pg_ident.conf', renderIdent(spec)]] as const) {
      const path = join(paths.pgdata, file)
      if (await readFile(path, 'utf8').catch(() => '') !== content) {
        await this.writePostgresFile(path, content)
        auth = true
      }
    }

    const changed = changedSettings(state.appliedSettings, settings)
    state.appliedSettings = Object.fromEntries(settings)
    return { settings: changed, auth }
  }

  /** Written before the settings that name it; removed with backup_config (archive_command is the no-op again). */
  private async writePgbackrestConf (paths: InstancePaths, state: InstanceRecord, spec: InstanceSpec): Promise<void> {
    if (spec.backup === undefined) {
      await rm(paths.pgbackrestConf, { force: true })
      return
    }
    await mkdir(paths.pgbackrestLockDir, { recursive: true, mode: 0o700 })
    await this.handToPostgres(paths.pgbackrestLockDir)
    await this.writePostgresFile(paths.pgbackrestConf, renderPgbackrestConf(spec.backup, {
      config: paths.pgbackrestConf, pgdata: paths.pgdata, socketDir: paths.socketDir, port: state.port, lockDir: paths.pgbackrestLockDir, logDir: paths.logDir
    }))
  }

  // ---- postgres processes ------------------------------------------------------------------------------------

  private bin (state: InstanceRecord, name: string): string {
    return join(binDir(this.root, state.postgresMajor), name)
  }

  private async run (state: InstanceRecord, paths: InstancePaths, name: string, args: string[]): Promise<string> {
    return await runCommand(this.bin(state, name), args, {
      // PGPASSFILE, a path: the postmaster started here hands it to its walreceiver and pglogical's workers, and
      // pg_basebackup reads it; the password itself is in no argument, environment or conninfo.
      runAs: this.runAs, cwd: paths.dir, env: { PGCONNECT_TIMEOUT: '10', PGPASSFILE: paths.passfile }
    })
  }

  /** initdb for a primary, pg_basebackup for a replica; for an existing replica, follows a primary that moved. */
  private async ensureDataDirectory (paths: InstancePaths, state: InstanceRecord, spec: InstanceSpec): Promise<void> {
    const standbyOf = followPrimary(state, spec, !state.initialized, this.log)
    if (state.initialized) return
    await rm(paths.pgdata, { recursive: true, force: true })
    if (standbyOf === undefined && spec.restore !== undefined) {
      await this.bootstrapFromBackup(paths, state, spec.restore)
    } else if (standbyOf === undefined) {
      await this.initdb(paths, state)
    } else {
      await this.cloneFromPrimary(paths, state, standbyOf)
      // The clone holds what the primary's scripts did: once promoted, it must not run them again.
      state.scriptsDone = { postInit: true, postDatabaseCreate: true }
    }
    state.initialized = true
  }

  /**
   * A new primary made from a pgBackRest backup (the anchor's create-from-backup and add-node-from-backup) instead of
   * initdb: `pgbackrest restore` into the empty data directory, through a config file of its own that recovery reads
   * WAL through until the server is adopted (adoptBootstrapped). Its output goes to the daemon's log.
   */
  private async bootstrapFromBackup (paths: InstancePaths, state: InstanceRecord, restore: InstanceRestore): Promise<void> {
    const started = Date.now()
    const restoreConf = join(paths.dir, 'pgbackrest.restore.conf')
    // Logged by the daemon only: this restore has no task log of its own.
    await this.stopLeftoverPgbackrest(paths, () => {})
    await mkdir(paths.pgbackrestLockDir, { recursive: true, mode: 0o700 })
    await this.handToPostgres(paths.pgbackrestLockDir)
    await this.writePostgresFile(restoreConf, renderRestoreConf(restore, {
      config: restoreConf, pgdata: paths.pgdata, socketDir: paths.socketDir, port: state.port, lockDir: paths.pgbackrestLockDir, logDir: paths.logDir
    }))
    await mkdir(paths.pgdata, { mode: 0o700 })
    await this.handToPostgres(paths.pgdata)
    const lines: string[] = []
    await streamCommand(this.pgbackrest, restoreArgs(restoreConf, restore.options), { runAs: this.runAs, cwd: paths.dir, onLine: line => { lines.push(line) }, pidFile: this.pgbackrestPidFile(paths) })
    this.log.info({ instanceId: state.instanceId, source: `${restore.sourceDatabaseId}/${restore.sourceNodeName}`, ms: Date.now() - started, last: lines.at(-1) }, 'restored from a backup')
    // The backup holds its source's scripts' work; this node must not run them again.
    state.scriptsDone = { postInit: true, postDatabaseCreate: true }
    state.restoredFrom = { sourceDatabaseName: restore.sourceDatabaseName, databaseName: restore.databaseName }
  }

  /** A server made from a backup, once its recovery has ended: this database's own (adoptRestoredDatabase). */
  private async adoptBootstrapped (paths: InstancePaths, state: InstanceRecord): Promise<void> {
    const from = state.restoredFrom
    if (from === undefined) return
    await this.waitRecoveryEnded(paths, state, undefined)
    await adoptRestoredDatabase(this.admin(paths, state), from.sourceDatabaseName, from.databaseName)
    await this.writePostgresFile(join(paths.pgdata, MANAGED_CONF_FILE), renderManagedConf(new Map(Object.entries(state.appliedSettings))))
    await this.restartPostgres(paths, state)
    await rm(join(paths.dir, 'pgbackrest.restore.conf'), { force: true })
    delete state.restoredFrom
    await this.records.write(state)
    this.log.info({ instanceId: state.instanceId }, 'restored server adopted')
  }

  private async initdb (paths: InstancePaths, state: InstanceRecord): Promise<void> {
    const started = Date.now()
    await this.run(state, paths, 'initdb', [
      '-D', paths.pgdata, '-U', SYSTEM_SUPERUSER, '-E', 'UTF8', '--locale=C.UTF-8',
      '--auth-local=trust', '--auth-host=scram-sha-256', '--data-checksums', '--no-instructions'
    ])
    this.log.info({ instanceId: state.instanceId, ms: Date.now() - started }, 'initdb done')
  }

  /**
   * pg_basebackup over a physical slot named after the instance. No `-R`: the standby settings go into the managed
   * conf file (which follows a moved primary) and standby.signal is written here.
   */
  private async cloneFromPrimary (paths: InstancePaths, state: InstanceRecord, primary: StandbyOf): Promise<void> {
    const started = Date.now()
    const slotExists = await replicaSlotExists(primary, this.log, this.superuserPassword())
    await this.run(state, paths, 'pg_basebackup', basebackupArgs(primary, paths.pgdata, slotExists))
    await this.writePostgresFile(join(paths.pgdata, 'standby.signal'), '')
    this.log.info({ instanceId: state.instanceId, primary: `${primary.host}:${primary.port}`, ms: Date.now() - started }, 'base backup done')
  }

  private async postmasterPid (paths: InstancePaths): Promise<number | undefined> {
    const content = await readFile(join(paths.pgdata, 'postmaster.pid'), 'utf8').catch(() => undefined)
    const pid = Number(content?.split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  }

  /** The postmaster's pid while it is alive (a zombie counts as dead). */
  private async runningPid (paths: InstancePaths): Promise<number | undefined> {
    const pid = await this.postmasterPid(paths)
    return pid !== undefined && await isProcessAlive(pid) ? pid : undefined
  }

  /**
   * A dead postmaster leaves postmaster.pid and the socket lock behind. Postgres itself ignores stale ones, except
   * when the old pid is an unreaped zombie, which it takes for a live server; the files are only removed once the
   * pid is known dead.
   */
  private async clearStaleLocks (paths: InstancePaths): Promise<void> {
    if (await this.postmasterPid(paths) === undefined || await this.runningPid(paths) !== undefined) return
    await unlink(join(paths.pgdata, 'postmaster.pid')).catch(() => undefined)
    const leftovers = (await readdir(paths.socketDir).catch(() => [])).filter(name => name.startsWith('.s.PGSQL.'))
    await Promise.all(leftovers.map(async name => { await unlink(join(paths.socketDir, name)).catch(() => undefined) }))
  }

  private async startPostgres (paths: InstancePaths, state: InstanceRecord): Promise<void> {
    const started = Date.now()
    await this.clearStaleLocks(paths)
    try {
      await this.run(state, paths, 'pg_ctl', ['start', '-D', paths.pgdata, '-l', paths.startupLog, '-w', '-t', '120', '-s'])
    } catch (err) {
      throw new Error(`starting ${state.instanceId} failed; the server said:\n${await serverSaid(paths, started, 15)}`, { cause: err })
    }
    if (state.pendingRestart === true) {
      // Whatever waited for a restart is in effect now.
      delete state.pendingRestart
      await this.records.write(state)
    }
    this.log.info({ instanceId: state.instanceId, port: state.port, ms: Date.now() - started }, 'started')
  }

  private async stopPostgres (paths: InstancePaths, state: InstanceRecord): Promise<void> {
    if (await this.runningPid(paths) === undefined) return
    try {
      await this.run(state, paths, 'pg_ctl', ['stop', '-D', paths.pgdata, '-m', 'fast', '-w', '-t', '60', '-s'])
    } catch (err) {
      this.log.warn({ err, instanceId: state.instanceId }, 'fast shutdown failed; stopping immediately')
      await this.run(state, paths, 'pg_ctl', ['stop', '-D', paths.pgdata, '-m', 'immediate', '-w', '-t', '30', '-s'])
    }
    this.log.info({ instanceId: state.instanceId }, 'stopped')
  }

  /**
   * Whether the installed binary is a newer minor than the running server (the packages were upgraded under it).
   * Asked only when the spec is applied (an update, force_update, a daemon start), never on a timer: the restart it
   * asks for then comes in the instance's turn of the rolling restart.
   */
  private async newerBinaries (paths: InstancePaths, state: InstanceRecord, installed: string): Promise<boolean> {
    const running = await this.admin(paths, state)('postgres', serverRole)
    const newer = compareVersions(installed, running.postgresVersion) > 0
    if (newer) this.log.info({ instanceId: state.instanceId, running: running.postgresVersion, installed }, 'the installed PostgreSQL is newer than the running server: a restart moves it')
    return newer
  }

  private async restartPostgres (paths: InstancePaths, state: InstanceRecord): Promise<void> {
    await this.stopPostgres(paths, state)
    await this.startPostgres(paths, state)
  }

  // ---- SQL ---------------------------------------------------------------------------------------------------

  /** Admin connections over the instance's socket. */
  private admin (paths: InstancePaths, state: InstanceRecord): AdminConnect {
    return async (database, work) => await withAdminConnection({ host: paths.socketDir, port: state.port, database }, this.log, work)
  }

  private async inspect (paths: InstancePaths, state: InstanceRecord): Promise<InstanceStatus> {
    const base = statusBase(state, paths.socketDir)
    const pid = await this.runningPid(paths)
    if (pid === undefined) {
      return { ...base, state: !state.initialized ? 'starting' : state.desiredRunning ? 'crashed' : 'stopped' }
    }
    try {
      const server = await this.admin(paths, state)('postgres', serverRole)
      return { ...base, state: 'running', ...server, pid, ...(state.pendingRestart === true ? { pendingRestart: true } : {}) }
    } catch {
      return { ...base, state: 'starting', pid }
    }
  }
}
