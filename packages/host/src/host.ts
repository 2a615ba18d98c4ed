import { EventEmitter } from 'node:events'
import { access, copyFile, mkdir } from 'node:fs/promises'
import { cpus as osCpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { timingSafeEqual } from 'node:crypto'
import * as A from '@automerge/automerge'
import { LeaseVoter, Leases, meshTransport, serveLeases } from '@pgmesh/lease'
import { ClusterKey, Heartbeats, Mesh, loadOrCreatePeerKey, type Reachability } from '@pgmesh/mesh'
import { ClusterAlreadyInitializedError, ClusterNotInitializedError, InvalidInputError, InvalidJoinTokenError, NotFoundError, ServerError, newUuid } from '@pgmesh/model'
import { ClusterState, DocReplicator, type HostRecord } from '@pgmesh/state'
import type { Logger } from 'pino'
import { Databases } from './databases.js'
import { ObservedCluster, type PeerReport } from './observed-cluster.js'
import { Operations } from './operations.js'
import { HostMetrics } from './metrics.js'
import type { ObservedInstance } from './observed.js'
import { detectPostgresVersion } from './postgres-version.js'
import { type TaskLogEntry, TaskLogStore } from './task-log.js'
import { type Task, Tasks } from './tasks.js'
import { VERSION } from './version.js'

/** Default lease of a node's primary; a failover waits it out. */
const DEFAULT_LEASE_MS = 4000
/** Clock-rate drift allowance between hosts over one lease. */
const LEASE_DRIFT_MS = 200

const TASK_LOG_PROTOCOL = '/pgmesh/task-log/1.0.0'

export interface HostConfig {
  hostId: string
  dataDir: string
  /** The HTTP API base URL other hosts and clients use for this host. */
  apiUrl: string
  /** libp2p listen multiaddrs. */
  listen: string[]
  announce: string[]
  /** Multiaddrs of hosts to join through at start (with `clusterKeyFile`). */
  bootstrap: string[]
  /** A cluster key to join with, copied into the data dir on first start. */
  clusterKeyFile?: string
  orchestrator: 'process' | 'swarm'
  clientAddresses: string[]
  /** The Postgres version new databases get when their spec names none. */
  defaultPostgresVersion?: string
  /** Heartbeat period and the silence after which a host is unreachable. */
  heartbeatMs?: number
  unreachableAfterMs?: number
  /** How long a primary's lease lasts (default 4 s); failover takes a little longer than that. */
  leaseMs?: number
}

export interface ComponentStatus { healthy: boolean, error?: string, details?: Record<string, unknown> }

/** What a host tells the others about itself in every heartbeat. */
export interface HostObserved {
  version: string
  components: Record<string, ComponentStatus>
  instances?: ObservedInstance[]
}

export interface HostView {
  record: HostRecord
  reachability: Reachability
  /** When this host last heard from it (its own clock). */
  lastSeen: Date | undefined
  observed: HostObserved | undefined
}

export interface JoinOptions {
  cluster_id: string
  cluster_key: string
  /** Multiaddrs of every known host, the answering host first. */
  bootstrap: string[]
  /** The answering host's document heads: the joiner has converged once it holds them. */
  heads: string[]
}

const KEY_FILE = 'cluster.key'

/**
 * One pgmesh host: its cluster document, its place in the mesh and its health. Owns start-up, cluster init and
 * join, and shutdown; the HTTP API and the reconciler are built on it.
 */
export class Host extends EventEmitter<{ initialized: [] }> {
  readonly metrics: HostMetrics
  readonly tasks: Tasks
  readonly databases: Databases
  readonly operations: Operations
  /** This host's vote in the cluster's leases (answering other hosts over the mesh). */
  readonly leaseVoter: LeaseVoter
  /** Leases asked of every host of the cluster; set once the mesh runs. */
  leases: Leases | undefined
  private readonly taskLogs: TaskLogStore
  mesh: Mesh | undefined
  heartbeats: Heartbeats<HostObserved> | undefined
  replicator: DocReplicator | undefined
  private keeper: NodeJS.Timeout | undefined
  private clusterKey: ClusterKey | undefined
  private stopping = false
  private readonly startedAt = Date.now()
  private announcedInitialized = false
  private registering = false

  private constructor (readonly config: HostConfig, readonly state: ClusterState, private readonly log: Logger) {
    super()
    this.taskLogs = new TaskLogStore(join(config.dataDir, 'tasks'), config.hostId)
    this.tasks = new Tasks(config.hostId, state, this.taskLogs, async (taskId) => await this.remoteTaskLogs(taskId))
    // Reads serve this host's own instances up to 100 ms old: a tenth of the heartbeat lag of every peer's.
    const observed = new ObservedCluster({
      own: () => this.instanceObserver?.() ?? [],
      peers: () => this.peerReports(),
      ownRefreshMs: 100
    })
    this.databases = new Databases({
      hostId: config.hostId,
      state,
      tasks: this.tasks,
      knownHostIds: () => new Set(Object.keys(this.state.doc.hosts ?? {})),
      observed: () => observed.snapshot(),
      defaultPostgresVersion: config.defaultPostgresVersion
    })
    // Grants never outlast the cluster's lease duration, so a restarted voter need only wait that long.
    this.leaseVoter = new LeaseVoter({ maxDurationMs: config.leaseMs ?? DEFAULT_LEASE_MS })
    this.operations = new Operations({
      state,
      tasks: this.tasks,
      observedInstances: () => this.clusterInstances(),
      reachableHosts: () => this.reachableHosts()
    })
    this.metrics = new HostMetrics({
      peers: () => this.mesh?.connectedPeers().length ?? 0,
      knownHosts: () => Object.keys(this.state.doc.hosts ?? {}).length,
      documentBytes: () => this.state.sizeBytes(),
      replication: () => this.replicator?.stats
    })
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

  static async open (config: HostConfig, logger: Logger): Promise<Host> {
    await mkdir(config.dataDir, { recursive: true })
    const state = await ClusterState.open({ dir: join(config.dataDir, 'state'), hostId: config.hostId, logger: logger.child({ component: 'state' }) })
    const defaultPostgresVersion = config.defaultPostgresVersion ?? await detectPostgresVersion()
    return new Host({ ...config, ...(defaultPostgresVersion === undefined ? {} : { defaultPostgresVersion }) }, state, logger.child({ component: 'host' }))
  }

  /** Starts the mesh when this host already belongs to a cluster (or was given a key to join with). */
  async start (): Promise<void> {
    const keyFile = join(this.config.dataDir, KEY_FILE)
    if (!(await exists(keyFile)) && this.config.clusterKeyFile !== undefined) {
      await copyFile(this.config.clusterKeyFile, keyFile)
    }
    if (await exists(keyFile)) {
      await this.startMesh(await ClusterKey.load(keyFile))
      this.registerSelf()
    }
  }

  /** This host is part of an initialized cluster and listed in its document. */
  get initialized (): boolean {
    const own = this.state.doc.hosts?.[this.config.hostId]
    return this.state.initialized && this.mesh !== undefined && own?.peer_id === this.mesh.peerId
  }

  requireInitialized (): void {
    if (!this.initialized) throw new ClusterNotInitializedError()
  }

  async initCluster (clusterId: string = newUuid()): Promise<{ token: string, server_urls: string[] }> {
    if (this.initialized || this.state.initialized || this.mesh !== undefined) throw new ClusterAlreadyInitializedError()
    const key = ClusterKey.generate()
    await key.save(join(this.config.dataDir, KEY_FILE))
    await this.state.initialize(clusterId)
    await this.startMesh(key)
    await this.writeOwnRecord()
    this.log.info({ clusterId }, 'cluster initialized')
    return this.joinToken()
  }

  joinToken (): { token: string, server_urls: string[] } {
    this.requireInitialized()
    return { token: this.key().joinToken(), server_urls: [this.config.apiUrl] }
  }

  /** Answers a joining host (the internal join-options call): checks its token and hands over the cluster key. */
  joinOptions (token: string, hostId: string): JoinOptions {
    this.requireInitialized()
    if (!constantTimeEqual(token, this.key().joinToken())) throw new InvalidJoinTokenError()
    const existing = this.state.doc.hosts?.[hostId]
    if (existing !== undefined) throw new InvalidInputError(`a host with ID ${hostId} already exists in the cluster`)
    const hosts = Object.values(this.state.doc.hosts ?? {})
    const self = this.mesh?.addresses() ?? []
    return {
      cluster_id: this.state.doc.cluster?.id ?? '',
      cluster_key: this.key().toString(),
      bootstrap: [...self, ...hosts.filter(h => h.id !== this.config.hostId).flatMap(h => [...h.peer_addresses])],
      heads: this.state.heads()
    }
  }

  /** The whole cluster document for a joining host (the internal join-document call), behind the same token check. */
  joinDocument (token: string): Uint8Array {
    this.requireInitialized()
    if (!constantTimeEqual(token, this.key().joinToken())) throw new InvalidJoinTokenError()
    return A.save(this.state.doc)
  }

  /**
   * Joins through a member's API: fetches the cluster key and the member's document, dials the members, and returns
   * once this host holds the member's document and has added itself to it.
   */
  async joinCluster (token: string, serverUrls: string[], timeoutMs = 30_000): Promise<void> {
    if (this.initialized || this.mesh !== undefined) throw new ClusterAlreadyInitializedError()
    const started = Date.now()
    const { options, member } = await fetchJoinOptions(serverUrls, token, this.config.hostId, this.log)
    const key = ClusterKey.parse(options.cluster_key)
    if (`PGEDGE-${key.fingerprint()}` !== token.slice(0, 71)) throw new InvalidJoinTokenError()
    await key.save(join(this.config.dataDir, KEY_FILE))
    const snapshotBytes = await this.adoptMemberDocument(member, token, options.cluster_id)
    const fetchedMs = Date.now() - started
    await this.startMesh(key, options.bootstrap)
    const meshMs = Date.now() - started
    const deadline = Date.now() + timeoutMs
    while (!A.hasHeads(this.state.doc, options.heads)) {
      if (Date.now() > deadline) throw new ServerError('timed out waiting for the cluster document from the members')
      await sleep(20)
    }
    const convergedMs = Date.now() - started
    await this.writeOwnRecord()
    // Joined means the cluster knows this host too: a spec naming it, sent to that member right after, must pass.
    while (!(await this.listedBy(member))) {
      if (Date.now() > deadline) throw new ServerError(`member ${member} does not list this host yet`)
      await sleep(20)
    }
    this.log.info({ clusterId: options.cluster_id, snapshotBytes, fetchedMs, meshMs, convergedMs, ms: Date.now() - started }, 'joined cluster')
  }

  private async listedBy (member: string): Promise<boolean> {
    const res = await fetch(`${member}/v1/hosts/${encodeURIComponent(this.config.hostId)}`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
    await res?.body?.cancel()
    return res?.status === 200
  }

  /**
   * Starts from the member's document instead of an empty one. Best effort: whatever fails here, the sync protocol
   * still brings the document (only slower). Returns the snapshot's size, 0 when none was adopted.
   */
  private async adoptMemberDocument (member: string, token: string, clusterId: string): Promise<number> {
    try {
      const res = await fetch(`${member}/v1/internal/cluster/join-document`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
        signal: AbortSignal.timeout(10_000)
      })
      if (!res.ok) throw new Error(`member answered ${res.status}`)
      const snapshot = new Uint8Array(await res.arrayBuffer())
      await this.state.adopt(snapshot, member, doc => {
        if (doc.cluster?.id !== clusterId) throw new Error(`the member's document is of cluster '${doc.cluster?.id ?? ''}', not '${clusterId}'`)
      })
      return snapshot.length
    } catch (err) {
      this.log.warn({ member, err: (err as Error).message }, 'could not start from the member\'s document; syncing it instead')
      return 0
    }
  }

  hostViews (): HostView[] {
    const now = Date.now()
    return Object.values(this.state.doc.hosts ?? {})
      .map(record => this.view(record, now))
      .sort((a, b) => a.record.id.localeCompare(b.record.id))
  }

  hostView (hostId: string): HostView {
    const record = this.state.doc.hosts?.[hostId]
    if (record === undefined) throw new NotFoundError('no host found with the given ID')
    return this.view(record, Date.now())
  }

  /** Removes a host from the cluster (the anchor's guards), and keeps its peer out of the mesh from now on. */
  async removeHost (hostId: string, force: boolean): Promise<{ task: Task }> {
    this.requireInitialized()
    if (hostId === this.config.hostId) throw new InvalidInputError('a host cannot remove itself from the cluster')
    const record = this.state.doc.hosts?.[hostId]
    if (record === undefined) throw new NotFoundError('no host found with the given ID')
    if (!force && hostHasInstances(this.state.doc.databases ?? {}, hostId)) throw new InvalidInputError('cannot remove host with running instances')
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
    // Removing a host is a document change only: it completes as it is written.
    const task: Task = { ...this.tasks.newTask({ scope: 'host', entity_id: hostId, host_id: hostId, type: 'remove_host' }), status: 'completed', completed_at: now }
    await this.state.change({ op: 'host.remove', entity: hostId }, d => {
      d.removed_peers[record.peer_id] = { host_id: hostId, removed_at: now }
      delete d.hosts[hostId]
      d.tasks[task.task_id] = { ...task }
    })
    await this.tasks.log(task.task_id, `removed host '${hostId}'`, { host_id: hostId, force })
    return { task }
  }

  /** Log entries other hosts hold for a task: asks every connected host, briefly, and skips those that don't answer. */
  private async remoteTaskLogs (taskId: string): Promise<TaskLogEntry[]> {
    const mesh = this.mesh
    if (mesh === undefined) return []
    const answers = await Promise.all(mesh.connectedPeers().map(async (peer) => {
      try {
        const channel = await mesh.open(peer, TASK_LOG_PROTOCOL, AbortSignal.timeout(2000))
        await channel.write(new TextEncoder().encode(JSON.stringify({ task_id: taskId })))
        const reply = await Promise.race([channel.read(), sleep(2000).then(() => { throw new Error('timeout') })])
        await channel.close().catch(() => {})
        return JSON.parse(new TextDecoder().decode(reply)) as TaskLogEntry[]
      } catch (err) {
        this.log.debug({ peer, err: (err as Error).message }, 'could not read task log from peer')
        return []
      }
    }))
    return answers.flat()
  }

  async stop (): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    if (this.keeper !== undefined) clearInterval(this.keeper)
    if (this.settleTimer !== undefined) clearTimeout(this.settleTimer)
    this.heartbeats?.stop()
    this.replicator?.stop()
    await this.state.close()
    await this.mesh?.stop()
  }

  /** Components of this host's runtime beyond the mesh and the document (the swarm orchestrator's `docker`). */
  readonly componentObservers = new Map<string, () => ComponentStatus>()

  /** Set by the reconciler: this host's instances as it sees them, sent with every heartbeat. */
  instanceObserver: (() => ObservedInstance[]) | undefined

  /** Every reachable host's instances, as last reported (this host's own, fresh). */
  clusterInstances (): ObservedInstance[] {
    return [...(this.instanceObserver?.() ?? []), ...this.peerReports().flatMap(p => p.instances)]
  }

  /** What the reachable peers last reported. */
  private peerReports (): PeerReport[] {
    const now = Date.now()
    const out: PeerReport[] = []
    for (const id of Object.keys(this.state.doc.hosts ?? {})) {
      if (id === this.config.hostId || this.heartbeats?.reachability(id, now) !== 'healthy') continue
      const report = this.heartbeats.get(id)?.heartbeat.observed
      if (report !== undefined) out.push({ hostId: id, report, instances: report.instances ?? [] })
    }
    return out
  }

  /** Hosts whose heartbeats are current (always this one). */
  reachableHosts (): Set<string> {
    const now = Date.now()
    return new Set(Object.keys(this.state.doc.hosts ?? {}).filter(id => id === this.config.hostId || this.heartbeats?.reachability(id, now) === 'healthy'))
  }

  observed (): HostObserved {
    const peers = this.mesh?.connectedPeers().length ?? 0
    const others = Object.keys(this.state.doc.hosts ?? {}).filter(id => id !== this.config.hostId).length
    return {
      version: VERSION,
      components: {
        mesh: {
          healthy: others === 0 || peers > 0,
          ...(others > 0 && peers === 0 ? { error: 'not connected to any other host' } : {}),
          details: { connected_peers: peers, other_hosts: others }
        },
        state: { healthy: true, details: { heads: this.state.heads().length } },
        ...Object.fromEntries([...this.componentObservers].map(([name, observe]) => [name, observe()]))
      },
      instances: this.instanceObserver?.() ?? []
    }
  }

  private view (record: HostRecord, now: number): HostView {
    const last = this.heartbeats?.get(record.id)
    return {
      record,
      reachability: this.heartbeats?.reachability(record.id, now) ?? (record.id === this.config.hostId ? 'healthy' : 'unknown'),
      lastSeen: record.id === this.config.hostId ? new Date(now) : (last === undefined ? undefined : new Date(last.receivedAt)),
      observed: record.id === this.config.hostId ? this.observed() : last?.heartbeat.observed
    }
  }

  private key (): ClusterKey {
    if (this.clusterKey === undefined) throw new ClusterNotInitializedError()
    return this.clusterKey
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
    const replicator = new DocReplicator(this.state, mesh, { logger: this.log.child({ component: 'replicator' }) })
    mesh.handle(TASK_LOG_PROTOCOL, async (channel) => {
      const request = JSON.parse(new TextDecoder().decode(await channel.read())) as { task_id?: unknown }
      const entries = typeof request.task_id === 'string' ? await this.taskLogs.read(request.task_id).catch(() => []) : []
      await channel.write(new TextEncoder().encode(JSON.stringify(entries)))
      await channel.close()
    })
    serveLeases(mesh, this.leaseVoter)
    this.leases = new Leases(this.leaseVoter, meshTransport(mesh, () => this.leaseVoters(mesh.peerId)), { durationMs: this.config.leaseMs ?? DEFAULT_LEASE_MS, driftMs: LEASE_DRIFT_MS })
    const heartbeats = new Heartbeats<HostObserved>(mesh, {
      hostId: this.config.hostId,
      intervalMs: this.config.heartbeatMs,
      unreachableAfterMs: this.config.unreachableAfterMs,
      observe: () => this.observed(),
      logger
    })
    await mesh.start()
    this.mesh = mesh
    this.replicator = replicator
    this.heartbeats = heartbeats
    replicator.start()
    heartbeats.start()
    this.dialBootstrap(bootstrap)
    this.keeper = setInterval(() => { this.keepMeshConnected(bootstrap) }, 2000)
    this.keeper.unref()
    this.settleTasksSoon()
  }

  /** Every other host of the cluster votes in leases, reachable or not: a majority of all of them is needed. */
  private leaseVoters (self: string): string[] {
    return Object.values(this.state.doc.hosts ?? {}).map(h => h.peer_id).filter(p => p !== self && p !== '')
  }

  private dialBootstrap (bootstrap: readonly string[]): void {
    const mesh = this.mesh
    if (mesh === undefined) return
    for (const address of bootstrap) {
      if (mesh.addresses().includes(address)) continue
      void mesh.dial(address, AbortSignal.timeout(5000)).catch((err: unknown) => {
        this.log.debug({ address, err: (err as Error).message }, 'bootstrap dial failed; will retry')
      })
    }
  }

  /** Dials every host the document lists (the bootstrap peer is only the first contact), and denies removed ones. */
  private keepMeshConnected (bootstrap: readonly string[]): void {
    const mesh = this.mesh
    if (mesh === undefined || this.stopping) return
    const doc = this.state.doc
    for (const peer of Object.keys(doc.removed_peers ?? {})) mesh.deny(peer)
    const hosts = Object.values(doc.hosts ?? {}).filter(h => h.id !== this.config.hostId)
    if (hosts.length === 0 && mesh.connectedPeers().length === 0) this.dialBootstrap(bootstrap)
    mesh.keepConnected(hosts.map(h => ({ peerId: h.peer_id, addresses: [...h.peer_addresses] })))
  }

  private settleTimer: NodeJS.Timeout | undefined
  private settleTasksSoon (): void {
    if (this.settleTimer !== undefined || this.stopping) return
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined
      if (this.stopping || !this.initialized) return
      void this.tasks.settleSuperseded().catch((err: unknown) => { this.log.warn({ err }, 'failed to settle superseded tasks') })
    }, 100)
  }

  private afterDocChange (): void {
    if (this.mesh === undefined || this.stopping) return
    this.registerSelf()
    this.keepMeshConnected(this.config.bootstrap)
    if (this.initialized && !this.announcedInitialized) {
      this.announcedInitialized = true
      this.emit('initialized')
    }
  }

  /**
   * Once the document has arrived, makes sure this host's record is in it and current. Runs on start and after
   * every document change; a no-op when nothing differs.
   */
  private registerSelf (): void {
    if (!this.state.initialized || this.mesh === undefined || this.registering || this.stopping) return
    const own = this.state.doc.hosts?.[this.config.hostId]
    if (own !== undefined && own.peer_id !== this.mesh.peerId) {
      this.log.error({ hostId: this.config.hostId, peerId: own.peer_id }, 'another peer holds this host id in the cluster; not registering')
      return
    }
    if (this.state.doc.removed_peers?.[this.mesh.peerId] !== undefined) {
      this.log.warn('this host was removed from the cluster')
      return
    }
    if (own !== undefined && sameRecord(own, this.ownRecord(own.joined_at))) return
    this.registering = true
    void this.writeOwnRecord().catch((err: unknown) => { this.log.error({ err }, 'failed to register this host') })
      .finally(() => { this.registering = false })
  }

  private ownRecord (joinedAt: string): HostRecord {
    return {
      id: this.config.hostId,
      peer_id: this.mesh?.peerId ?? '',
      peer_addresses: this.mesh?.addresses() ?? [],
      client_addresses: this.config.clientAddresses,
      api_url: this.config.apiUrl,
      orchestrator: this.config.orchestrator,
      data_dir: this.config.dataDir,
      cpus: osCpus().length,
      memory: totalmem(),
      joined_at: joinedAt
    }
  }

  private async writeOwnRecord (): Promise<void> {
    const existing = this.state.doc.hosts?.[this.config.hostId]
    const record = this.ownRecord(existing?.joined_at ?? new Date().toISOString())
    await this.state.change({ op: existing === undefined ? 'host.join' : 'host.update', entity: record.id }, d => {
      const current = d.hosts[record.id]
      if (current === undefined) {
        d.hosts[record.id] = record
        return
      }
      // Field by field, so a concurrent removal (a delete of the whole record) still wins.
      for (const [k, v] of Object.entries(record) as Array<[keyof HostRecord, HostRecord[keyof HostRecord]]>) {
        if (JSON.stringify(current[k]) !== JSON.stringify(v)) (current as unknown as Record<string, unknown>)[k] = v
      }
    })
  }
}

function sameRecord (a: HostRecord, b: HostRecord): boolean {
  return JSON.stringify(toPlain(a)) === JSON.stringify(toPlain(b))
}

function toPlain (r: HostRecord): unknown {
  return Object.fromEntries(Object.entries(r).sort(([x], [y]) => x.localeCompare(y)).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]))
}

/** A host has instances while any database spec places a node on it. */
function hostHasInstances (databases: Record<string, unknown>, hostId: string): boolean {
  return Object.values(databases).some((db) => {
    const spec = (db as { spec?: { nodes?: Array<{ host_ids?: string[] }> }, deleted?: boolean } | undefined)
    if (spec === undefined || spec.deleted === true) return false
    return (spec.spec?.nodes ?? []).some(n => (n.host_ids ?? []).includes(hostId))
  })
}

/** The join options, and the base URL of the member that gave them. */
async function fetchJoinOptions (serverUrls: string[], token: string, hostId: string, log: Logger): Promise<{ options: JoinOptions, member: string }> {
  let lastError: unknown = new ServerError('no server URL answered')
  for (const url of serverUrls) {
    const base = url.replace(/\/+$/, '')
    try {
      const res = await fetch(`${base}/v1/internal/cluster/join-options`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, host_id: hostId }),
        signal: AbortSignal.timeout(5000)
      })
      if (res.ok) return { options: await res.json() as JoinOptions, member: base }
      const body = await res.json().catch(() => ({})) as { name?: string, message?: string }
      if (res.status === 401) throw new InvalidJoinTokenError()
      if (res.status === 400) throw new InvalidInputError(body.message ?? 'the member refused the join')
      lastError = new ServerError(`member ${base} answered ${res.status}: ${body.message ?? ''}`)
    } catch (err) {
      if (err instanceof InvalidJoinTokenError || err instanceof InvalidInputError) throw err
      log.warn({ url: base, err: (err as Error).message }, 'could not reach cluster member')
      lastError = err
    }
  }
  throw lastError instanceof Error && 'status' in lastError ? lastError : new ServerError(`could not reach any cluster member: ${(lastError as Error).message}`)
}

function constantTimeEqual (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
