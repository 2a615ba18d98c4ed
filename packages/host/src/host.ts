import { EventEmitter } from 'node:events'
import { access, copyFile, mkdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { ClusterDocument, DATA_KEY_FILE, DataKey, ObservedCluster, type TaskLogEntry } from '@pgmesh/cluster'
import { LeaseVoter, Leases, meshTransport, serveLeases } from '@pgmesh/lease'
import { ClusterKey, Heartbeats, Mesh, loadOrCreatePeerKey } from '@pgmesh/mesh'
import { defaultImage, type HostObserved, type Startable } from '@pgmesh/model'
import { ClusterState, Compactor, type Doc, DocReplicator } from '@pgmesh/state'
import type { Logger } from 'pino'
import type { HostConfig, HostSources } from './config.js'
import { HostHealth } from './host-health.js'
import { type PeerChange, PeerChanges } from './peer-changes.js'
import { MemberDirectory, RefusedMessages } from './member-directory.js'
import { KEY_FILE, Membership } from './membership.js'
import { HostMetrics } from './metrics.js'
import { HostTls } from './tls.js'
import { detectPostgresVersion } from './postgres-version.js'
import { ManifestSource } from './manifest-source.js'
import { announceTaskLogs, readPeerTaskLogs, receiveTaskLogs, serveTaskLogs } from './task-log-protocol.js'
import { tightenDataDir } from './data-dir.js'
import { leaseOptions, longestGrantMs } from './lease-timing.js'

const KEEPER_MS = 2000

/**
 * One pgmesh host's runtime: opens the cluster document and the document logic on it, starts the mesh (with the
 * document replicator, heartbeats, leases and the task-log protocol) once the host has a cluster key, and stops them
 * all. The API and the reconciler are built on its parts.
 */
export class Host extends EventEmitter<{ initialized: [], heartbeat: [hostId: string], peerChanged: [hostId: string, change: PeerChange] }> implements Startable {
  /** Task log entries as they are written, this host's and (by gossip) every other host's: the event stream's. */
  readonly taskLogEntries = new EventEmitter<{ entry: [taskId: string, entry: TaskLogEntry] }>()
  readonly metrics: HostMetrics
  readonly document: ClusterDocument
  readonly membership: Membership
  readonly health: HostHealth
  /** This host's vote in the cluster's leases (answering other hosts over the mesh). */
  readonly leaseVoter: LeaseVoter
  /** Which peer speaks for which host, from the document: every mesh message about a host is checked against it. */
  readonly members: MemberDirectory
  private readonly refused: RefusedMessages
  private leasesOfMesh: Leases | undefined
  private mesh: Mesh | undefined
  private heartbeats: Heartbeats<HostObserved> | undefined
  private replicator: DocReplicator | undefined
  /** Starts document generations (history compaction) when configured; see @pgmesh/state's "History and generations". */
  compactor: Compactor | undefined
  private clusterKey: ClusterKey | undefined
  private dataKey: DataKey | undefined
  private keeper: NodeJS.Timeout | undefined
  private settleTimer: NodeJS.Timeout | undefined
  private stopping = false
  private readonly startedAt = Date.now()
  private announcedInitialized = false

  private constructor (
    readonly config: HostConfig, readonly state: ClusterState, readonly tls: HostTls, private readonly log: Logger, sources: HostSources,
    /** The version manifest upgrades are checked against (embedded, plus the operator's file). */
    readonly manifest: ManifestSource
  ) {
    super()
    this.members = new MemberDirectory(() => state.doc)
    this.health = new HostHealth({
      hostId: config.hostId,
      state,
      heartbeats: () => this.heartbeats,
      connectedPeers: () => this.mesh?.connectedPeers().length ?? 0,
      ownInstances: sources.ownInstances ?? (() => []),
      generationGap: () => this.replicator?.generationGap,
      components: sources.components ?? {},
      ...(sources.postgresVersions === undefined ? {} : { postgresVersions: sources.postgresVersions })
    })
    // Reads serve this host's own instances up to 100 ms old: a tenth of the heartbeat lag of every peer's.
    const observed = new ObservedCluster({
      own: sources.ownInstances ?? (() => []),
      peers: () => this.health.peerReports(),
      ownRefreshMs: 100
    })
    this.document = new ClusterDocument({
      hostId: config.hostId,
      state,
      taskLogDir: join(config.dataDir, 'tasks'),
      remoteTaskLogs: async (taskId) => await readPeerTaskLogs(this.mesh, taskId, this.log,
        (peer, hostId) => this.members.authorizeSender(peer, hostId),
        (peer, hostId) => { this.refused.report('task_log', peer, { host_id: hostId }) }),
      observed: () => observed.snapshot(),
      reachableHosts: () => this.health.reachableHosts(),
      defaultPostgresVersion: config.defaultPostgresVersion,
      dataKey: () => this.dataKey,
      manifest: () => manifest.current()
    })
    this.document.taskLogs.on('appended', (taskId, entry) => { this.taskLogEntries.emit('entry', taskId, entry) })
    this.membership = new Membership({
      config,
      state,
      tasks: this.document.tasks,
      databases: this.document.databases,
      joinTokens: this.document.joinTokens,
      tls,
      log,
      mesh: () => this.mesh,
      startMesh: async (key, bootstrap) => { await this.startMesh(key, bootstrap) },
      clusterKey: () => this.clusterKey,
      dataKey: () => this.dataKey,
      adoptDataKey: (key) => { this.dataKey = key },
      stopping: () => this.stopping
    })
    this.leaseVoter = new LeaseVoter({ maxDurationMs: longestGrantMs(config.leaseMs) })
    this.metrics = new HostMetrics({
      peers: () => this.mesh?.connectedPeers().length ?? 0,
      knownHosts: () => Object.keys(this.state.doc.hosts ?? {}).length,
      documentBytes: () => this.state.sizeBytes(),
      replication: () => this.replicator?.stats,
      heartbeats: () => this.heartbeats?.stats,
      mesh: () => this.mesh?.stats(),
      generationGap: () => this.replicator?.generationGap !== undefined,
      ...(sources.automergeMemoryBytes === undefined ? {} : { automergeMemoryBytes: sources.automergeMemoryBytes })
    })
    this.refused = new RefusedMessages(log.child({ component: 'members' }), (kind) => { this.metrics.refusedMessages.inc({ kind }) })
    state.on('change', (event) => {
      this.metrics.documentChanges.inc({ origin: event.origin }, event.changes.length)
      if (event.origin === 'remote') {
        const now = Date.now()
        // History that predates this process (the catch-up at join or restart) says nothing about latency.
        for (const c of event.changes) {
          if (c.at < this.startedAt) continue
          this.metrics.changeVisibleSeconds.observe(Math.max(0, now - c.at) / 1000)
          this.log.debug({ op: c.op, entity: c.entity, from_host: c.host, latency_ms: now - c.at }, 'remote change applied')
        }
      }
      this.afterDocChange()
      if (event.origin === 'remote') this.settleTasksSoon()
    })
  }

  static async open (config: HostConfig, logger: Logger, sources: HostSources = {}): Promise<Host> {
    // 0711: the process orchestrator's postgres user must traverse it to its instances, nothing more.
    await mkdir(config.dataDir, { recursive: true, mode: 0o711 })
    await tightenDataDir(config.dataDir, logger)
    const state = await ClusterState.open({ dir: join(config.dataDir, 'state'), hostId: config.hostId, logger: logger.child({ component: 'state' }) })
    const manifest = await ManifestSource.open(config.manifestPath, logger.child({ component: 'manifest' }))
    // The anchor's default: on Swarm the manifest's default image's version (this machine's own binaries do not run
    // the instances), on a process host its newest installed binaries'.
    const defaultPostgresVersion = config.defaultPostgresVersion ??
      (config.orchestrator === 'swarm' ? defaultImage(manifest.current())?.postgres_version : await detectPostgresVersion())
    const tls = await HostTls.open(config.tls ?? { mode: 'none' }, config.dataDir, config.hostId, () => [...config.clientAddresses, new URL(config.apiUrl).hostname.replace(/^\[|\]$/g, '')])
    return new Host({ ...config, ...(defaultPostgresVersion === undefined ? {} : { defaultPostgresVersion }) }, state, tls, logger.child({ component: 'host' }), sources, manifest)
  }

  /** Starts the mesh when this host already belongs to a cluster (or was given a key to join with). */
  async start (): Promise<void> {
    this.manifest.start()
    const keyFile = join(this.config.dataDir, KEY_FILE)
    const dataKeyFile = join(this.config.dataDir, DATA_KEY_FILE)
    const memberBefore = await exists(keyFile)
    if (!memberBefore && this.config.clusterKeyFile !== undefined) {
      // Joining by key file: the data key travels beside it (a member's data dir holds both). Without it this host
      // could neither read the specs' secrets nor reach its peers' instances; refused before anything is written.
      const besideKey = join(dirname(this.config.clusterKeyFile), DATA_KEY_FILE)
      if (!(await exists(dataKeyFile)) && !(await exists(besideKey))) {
        throw new Error(`no ${DATA_KEY_FILE} beside the cluster key file ${this.config.clusterKeyFile}: copy it there from a member's data dir`)
      }
      if (!(await exists(dataKeyFile))) await (await DataKey.load(besideKey)).save(dataKeyFile)
      await copyFile(this.config.clusterKeyFile, keyFile)
    }
    if (memberBefore && !(await exists(dataKeyFile))) {
      // A member of a cluster from before data keys: every member derives the same one from the cluster key.
      await DataKey.derivedFromClusterKey((await ClusterKey.load(keyFile)).secret).save(dataKeyFile)
      this.log.info('derived this cluster\'s data key from its cluster key (the cluster predates data keys)')
    }
    if (await exists(dataKeyFile)) this.dataKey = await DataKey.load(dataKeyFile)
    else if (await exists(keyFile)) this.log.warn('this host has no data key (data.key beside the cluster key file it joined with): it cannot read or store the specs\' secrets, nor reach peers\' instances as the superuser')
    if (await exists(keyFile)) {
      await this.startMesh(await ClusterKey.load(keyFile))
      // Before the reconciler plans from the document this host holds: a removed host learns so first.
      await this.membership.probeRemoval()
      this.membership.registerSelf()
    }
  }

  async stop (): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    this.manifest.stop()
    if (this.keeper !== undefined) clearInterval(this.keeper)
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer)
    this.heartbeats?.stop()
    this.compactor?.stop()
    this.replicator?.stop()
    await this.state.close()
    await this.mesh?.stop()
  }

  get initialized (): boolean {
    return this.membership.initialized
  }

  /** The control plane's superuser password for peers' instances (from the data key), once this host has the key. */
  superuserPassword (): string | undefined {
    return this.dataKey?.superuserPassword()
  }

  /** Leases asked of every host of the cluster; there once the mesh runs. */
  get leases (): Leases | undefined {
    return this.leasesOfMesh
  }

  /** Sends this host's report now rather than at the next period (after its instances changed). */
  beat (): void {
    this.heartbeats?.beat()
  }

  private async startMesh (key: ClusterKey, bootstrap: string[] = this.config.bootstrap): Promise<void> {
    this.clusterKey = key
    const logger = this.log.child({ component: 'mesh' })
    const mesh = new Mesh({
      privateKey: await loadOrCreatePeerKey(join(this.config.dataDir, 'peer.key')),
      clusterKey: key,
      listen: this.config.listen,
      announce: this.config.announce,
      logger
    })
    const members = this.members
    const replicator = new DocReplicator(this.state, mesh, {
      logger: this.log.child({ component: 'replicator' }),
      admit: peer => !members.isRemoved(peer),
      onRefused: (peer) => { this.refused.report('document', peer, {}) },
      // Always on: once any member compacts, following it is the only way to keep syncing (a gap is refused, not merged).
      onLaterGeneration: async (doc) => { await this.document.enterGeneration(doc as Doc) }
    })
    const compaction = this.config.historyCompaction
    const compactor = compaction === undefined
      ? undefined
      : new Compactor({
        state: this.state,
        hostId: this.config.hostId,
        peerId: () => this.mesh?.peerId,
        members: () => Object.entries(this.state.doc.hosts ?? {}).map(([hostId, h]) => ({ hostId, peerId: h.peer_id })),
        acknowledgements: () => replicator.acknowledgements(),
        startGeneration: (doc, frontier) => ClusterDocument.startGeneration(doc, frontier, compaction.taskRetentionMs),
        enterGeneration: async (next) => await this.document.enterGeneration(next),
        logger: this.log.child({ component: 'compactor' })
      }, compaction)
    serveTaskLogs(mesh, this.document.taskLogs, peer => !members.isRemoved(peer))
    announceTaskLogs(mesh, this.document.taskLogs, logger)
    receiveTaskLogs(mesh, (peer, hostId) => members.authorizeSender(peer, hostId), (peer, hostId) => { this.refused.report('task_log', peer, { host_id: hostId }) },
      (taskId, entry) => { this.taskLogEntries.emit('entry', taskId, entry) })
    serveLeases(mesh, this.leaseVoter, {
      speaksFor: (peer, holder) => members.speaksForInstance(peer, holder),
      onRefused: (peer, request) => { this.refused.report('lease', peer, { key: request?.key, holder: request?.holder, release: request?.release === true }) }
    })
    this.leasesOfMesh = new Leases(this.leaseVoter, meshTransport(mesh, () => this.leaseVoters(mesh.peerId)), leaseOptions(this.config.leaseMs))
    const heartbeats = new Heartbeats<HostObserved>(mesh, {
      hostId: this.config.hostId,
      intervalMs: this.config.heartbeatMs,
      unreachableAfterMs: this.config.unreachableAfterMs,
      observe: () => this.health.observed(),
      members: () => Object.keys(this.state.doc.hosts ?? {}),
      authorizeSender: (peer, hostId) => members.authorizeSender(peer, hostId),
      // A joiner beats before its host record reaches this host: not worth a warning. A known host's id is.
      onRefused: (peer, hostId) => {
        const joining = members.hostOf(peer) === undefined && !members.isRemoved(peer) && !members.knows(hostId)
        this.refused.report('heartbeat', peer, { host_id: hostId }, joining)
      },
      logger
    })
    // Every heartbeat is `heartbeat`; only what changes the reconciler's inputs is `peerChanged` (peer-changes.ts).
    const changes = new PeerChanges(this.config.hostId, (hostId, change) => { this.emit('peerChanged', hostId, change) })
    heartbeats.on('heartbeat', (beat) => {
      this.health.heardHeartbeat(beat.host_id, beat.observed, Date.now())
      if (beat.host_id === this.config.hostId) return
      this.emit('heartbeat', beat.host_id)
      changes.heartbeat(beat)
    })
    heartbeats.on('reachability', (hostId, reachability) => { changes.reachability(hostId, reachability) })
    await mesh.start()
    this.mesh = mesh
    this.replicator = replicator
    this.heartbeats = heartbeats
    replicator.start()
    heartbeats.start()
    this.compactor = compactor
    compactor?.start()
    this.membership.dialBootstrap(bootstrap)
    this.keeper = setInterval(() => { this.membership.keepMeshConnected(bootstrap) }, KEEPER_MS)
    this.keeper.unref()
    this.settleTasksSoon()
  }

  /** Every other host of the cluster votes in leases, reachable or not: a majority of all of them is needed. */
  private leaseVoters (self: string): string[] {
    return Object.values(this.state.doc.hosts ?? {}).map(h => h.peer_id).filter(p => p !== self && p !== '')
  }

  private settleTasksSoon (): void {
    if (this.settleTimer !== undefined || this.stopping) return
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined
      if (this.stopping || !this.initialized) return
      void this.document.tasks.settleSuperseded().catch((err: unknown) => { this.log.warn({ err }, 'failed to settle superseded tasks') })
    }, 100)
  }

  private afterDocChange (): void {
    if (this.mesh === undefined || this.stopping) return
    this.membership.registerSelf()
    this.membership.keepMeshConnected(this.config.bootstrap)
    if (this.initialized && !this.announcedInitialized) {
      this.announcedInitialized = true
      this.emit('initialized')
    }
  }
}

async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}
