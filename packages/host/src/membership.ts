import { cpus as osCpus, totalmem } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { DATA_KEY_FILE, DataKey, type Databases, decodeSpec, type JoinTokens, type Tasks } from '@pgmesh/cluster'
import { ClusterKey, type Mesh } from '@pgmesh/mesh'
import {
  ClusterAlreadyInitializedError, ClusterNotInitializedError, type DatabaseRecord, type HostRecord, InvalidInputError, InvalidJoinTokenError, NotFoundError,
  newUuid, rfc3339, ServerError, type Task, transitionTask
} from '@pgmesh/model'
import { BUCKETED_FORMAT, type ClusterState, DOCUMENT_FORMAT, isBucketed, mayHoldScalarStrings, SCALAR_STRINGS_FORMAT } from '@pgmesh/state'
import type { Logger } from 'pino'
import type { HostConfig } from './config.js'
import { adoptMemberDocument, fetchJoinOptions, fetchMemberCa, type JoinOptions, listedBy, memberAnswer, sendOwnRecord } from './join-client.js'
import { fingerprint } from '@pgmesh/pki'
import type { HostTls, MemberTls } from './tls.js'

export const KEY_FILE = 'cluster.key'

/**
 * How long a forced removal waits for the replicas of the host's primaries to take over. A dead primary's replica
 * takes over once its lease has run out (about 4 s after the host went silent); a live one must be switched over.
 * Below the 30 s that HTTP clients commonly wait for an answer.
 */
const FAILOVER_WAIT_MS = 20_000
/** How often a host that reaches no peer asks the members' APIs whether it was removed. */
const REMOVAL_PROBE_MS = 10_000
/** How long after its join a host's record is taken to have reached every member. */
const JOINED_SETTLED_MS = 60_000

export interface MembershipDeps {
  config: HostConfig
  state: ClusterState
  tasks: Tasks
  /** A forced removal edits every database spec that names the host. */
  databases: Pick<Databases, 'hostRemovals' | 'removeHost'>
  joinTokens: JoinTokens
  /** This host's API certificates (auto TLS: created at init, received at join). */
  tls: HostTls
  log: Logger
  /** The mesh, once it runs. */
  mesh: () => Mesh | undefined
  /** Starts the mesh with the cluster's key (at init or join), dialing `bootstrap`. */
  startMesh: (key: ClusterKey, bootstrap?: string[]) => Promise<void>
  /** The cluster key the mesh runs with. */
  clusterKey: () => ClusterKey | undefined
  /** The cluster's data key, and how this host takes one on (init, join). */
  dataKey: () => DataKey | undefined
  adoptDataKey: (key: DataKey) => void
  stopping: () => boolean
}

/** The first bytes of every chunk Automerge writes (a document, a change). */
const AUTOMERGE_MAGIC = [0x85, 0x6f, 0x4a, 0x83]

/**
 * This host's place in the cluster: init, join (through a member's API, by token), the join answers it gives other
 * hosts, its own host record, removal of others, and the connections it keeps to every listed host.
 */
export class Membership {
  private registering = false
  private probing = false
  private lastProbe = 0

  constructor (private readonly deps: MembershipDeps) {}

  /** This host is part of an initialized cluster and listed in its document. */
  get initialized (): boolean {
    const mesh = this.deps.mesh()
    const own = this.deps.state.doc.hosts?.[this.deps.config.hostId]
    return this.deps.state.initialized && mesh !== undefined && own?.peer_id === mesh.peerId
  }

  /**
   * This host's peer is among the removed in the document it holds: it is no member any more, and its reconciler
   * removes its instances.
   */
  get removed (): boolean {
    const mesh = this.deps.mesh()
    return this.deps.state.initialized && mesh !== undefined && this.deps.state.doc.removed_peers?.[mesh.peerId] !== undefined
  }

  requireInitialized (): void {
    if (!this.initialized) throw new ClusterNotInitializedError()
  }

  async initCluster (clusterId: string = newUuid()): Promise<{ token: string, server_urls: string[] }> {
    if (this.initialized || this.deps.state.initialized || this.deps.mesh() !== undefined) throw new ClusterAlreadyInitializedError()
    const key = ClusterKey.generate()
    await key.save(join(this.deps.config.dataDir, KEY_FILE))
    const dataKey = DataKey.generate()
    await dataKey.save(join(this.deps.config.dataDir, DATA_KEY_FILE))
    this.deps.adoptDataKey(dataKey)
    await this.deps.state.initialize(clusterId)
    await this.deps.tls.createCluster(clusterId)
    await this.deps.startMesh(key)
    await this.writeOwnRecord()
    this.deps.log.info({ clusterId }, 'cluster initialized')
    return await this.joinToken()
  }

  /**
   * Issues a join token (each call a new one: only its hash is kept, so it cannot be shown again), valid for
   * `ttlMs` and for any number of joins until then or until revoked.
   */
  async joinToken (ttlMs?: number): Promise<{ token: string, server_urls: string[] }> {
    this.requireInitialized()
    const { token } = await this.deps.joinTokens.issue(this.trustFingerprint(), ttlMs)
    return { token, server_urls: [this.deps.config.apiUrl] }
  }

  /**
   * Answers a joining host (the internal join-options call): checks its token and hands over the cluster key, and
   * with auto TLS the cluster CA and a certificate for the joiner valid for `names`.
   */
  async joinOptions (token: string, hostId: string, names: readonly string[] = [], documentFormat = 1): Promise<JoinOptions> {
    this.checkToken(token)
    const { state } = this.deps
    if (state.doc.hosts?.[hostId] !== undefined) throw new InvalidInputError(`a host with ID ${hostId} already exists in the cluster`)
    if (documentFormat < SCALAR_STRINGS_FORMAT && mayHoldScalarStrings(state.automergeDoc)) {
      throw new InvalidInputError(`host ${hostId} runs a pgmesh that reads the cluster document only with strings as text (document format ${documentFormat}); ` +
        `this cluster's document stores them as scalar values (format ${SCALAR_STRINGS_FORMAT}): install this cluster's pgmesh version on ${hostId} and join again`)
    }
    if (documentFormat < BUCKETED_FORMAT && isBucketed(state.automergeDoc)) {
      throw new InvalidInputError(`host ${hostId} runs a pgmesh that reads the cluster document only with databases and tasks in one map each (document format ${documentFormat}); ` +
        `this cluster's document keeps them in buckets (format ${BUCKETED_FORMAT}): install this cluster's pgmesh version on ${hostId} and join again`)
    }
    const hosts = Object.values(state.doc.hosts ?? {})
    const self = this.deps.mesh()?.addresses() ?? []
    return {
      cluster_id: state.doc.cluster?.id ?? '',
      cluster_key: this.key().toString(),
      ...(this.deps.dataKey() === undefined ? {} : { data_key: this.deps.dataKey()?.toString() }),
      bootstrap: [...self, ...hosts.filter(h => h.id !== this.deps.config.hostId).flatMap(h => [...h.peer_addresses])],
      heads: state.heads(),
      ...await this.deps.tls.credentialsFor(hostId, [...names, '127.0.0.1', '::1', 'localhost']).then(c => c === undefined ? {} : { credentials: c })
    }
  }

  /** The whole cluster document for a joining host (the internal join-document call), behind the same token check. */
  joinDocument (token: string): Uint8Array {
    this.checkToken(token)
    return this.deps.state.save()
  }

  /**
   * A joining host's own record (the internal join-record call), behind the same token check: this member lists it
   * at once, instead of once the new mesh connection's sync brings it (~0.3 s), and passes it on as any remote change.
   */
  acceptJoinRecord (token: string, changes: Uint8Array): void {
    this.checkToken(token)
    const invalid = new InvalidInputError('changes: not Automerge changes of this document')
    // Automerge skips bytes it cannot read without a word.
    if (!AUTOMERGE_MAGIC.every((b, i) => changes[i] === b)) throw invalid
    this.deps.state.applyRemote('joining host', (doc, options) => {
      try {
        return [A.loadIncremental(doc, changes, options), undefined]
      } catch {
        throw invalid
      }
    })
  }

  /**
   * Joins through a member's API: fetches the cluster key and the member's document, dials the members, and returns
   * once this host holds the member's document and has added itself to it.
   */
  async joinCluster (token: string, serverUrls: string[], timeoutMs = 30_000): Promise<void> {
    const { config, log, state } = this.deps
    if (this.initialized || this.deps.mesh() !== undefined) throw new ClusterAlreadyInitializedError()
    const started = Date.now()
    const tokenFingerprint = /^PGEDGE-([0-9a-f]{64})-[0-9a-f]{32}$/.exec(token)?.[1]
    if (tokenFingerprint === undefined) throw new InvalidJoinTokenError()
    const { tls } = this.deps
    // An https member is trusted only as the token says: its CA's fingerprint (the operator's CA, or the one it serves).
    const trust = async (base: string): Promise<MemberTls | undefined> => {
      if (tls.settings.mode === 'configured') {
        if (fingerprint(tls.caCertificate ?? '') !== tokenFingerprint) throw new InvalidJoinTokenError('the join token names another CA than this host\'s')
        return tls.memberTls()
      }
      return { ca: await fetchMemberCa(base, tokenFingerprint) }
    }
    const { options, member, tls: joinTls } = await fetchJoinOptions(serverUrls, token, config.hostId, log, trust, tls.sanNames())
    const key = ClusterKey.parse(options.cluster_key)
    // Over plain HTTP the token names the cluster key; over TLS, the CA that vouched for the member.
    if (joinTls === undefined && key.fingerprint() !== tokenFingerprint) throw new InvalidJoinTokenError()
    if (options.credentials !== undefined && tls.settings.mode === 'auto') await tls.adopt(options.credentials, tokenFingerprint)
    const memberTls = joinTls === undefined ? undefined : tls.memberTls() ?? joinTls
    await key.save(join(config.dataDir, KEY_FILE))
    if (options.data_key !== undefined) {
      const dataKey = DataKey.parse(options.data_key)
      await dataKey.save(join(config.dataDir, DATA_KEY_FILE))
      this.deps.adoptDataKey(dataKey)
    }
    const snapshotBytes = await adoptMemberDocument(state, member, token, options.cluster_id, log, memberTls)
    const fetchedMs = Date.now() - started
    await this.deps.startMesh(key, options.bootstrap)
    const meshMs = Date.now() - started
    const deadline = Date.now() + timeoutMs
    while (!state.hasHeads(options.heads)) {
      if (Date.now() > deadline) throw new ServerError('timed out waiting for the cluster document from the members')
      await sleep(20)
    }
    const convergedMs = Date.now() - started
    const beforeRecord = state.heads()
    await this.writeOwnRecord()
    await sendOwnRecord(member, token, state.saveSince(beforeRecord), log, memberTls)
    // Joined means the cluster knows this host too: a spec naming it, sent to that member right after, must pass.
    while (!(await listedBy(member, config.hostId, memberTls))) {
      if (Date.now() > deadline) throw new ServerError(`member ${member} does not list this host yet`)
      await sleep(20)
    }
    log.info({ clusterId: options.cluster_id, snapshotBytes, fetchedMs, meshMs, convergedMs, ms: Date.now() - started }, 'joined cluster')
  }

  /**
   * Removes a host from the cluster (the anchor's guards), and keeps its peer out of the mesh from now on. With
   * `force`, first every database spec that names it goes without it, each as an update (or, for a database left
   * without nodes, a delete) whose `parent_id` is the remove_host task; a node whose primary is on it waits for a
   * replica to take over first. The task completes when those tasks have; without any, at once.
   */
  async removeHost (hostId: string, force: boolean, failoverWaitMs = FAILOVER_WAIT_MS): Promise<{ task: Task, updateTasks: Task[] }> {
    this.requireInitialized()
    const { state, tasks, databases } = this.deps
    if (hostId === this.deps.config.hostId) throw new InvalidInputError('a host cannot remove itself from the cluster')
    const record = state.doc.hosts?.[hostId]
    if (record === undefined) throw new NotFoundError('no host found with the given ID')
    if (!force && hostHasInstances(state.doc.databases ?? {}, hostId)) throw new InvalidInputError('cannot remove host with running instances')
    if (force) await this.awaitFailovers(hostId, failoverWaitMs)
    const task: Task = { ...tasks.newTask({ scope: 'host', entity_id: hostId, host_id: hostId, type: 'remove_host' }), status: 'running' }
    await state.change({ op: 'host.removing', entity: hostId }, d => { d.tasks[task.task_id] = { ...task } })
    await tasks.log(task.task_id, `removing host '${hostId}'`, { host_id: hostId, force })
    const updateTasks: Task[] = []
    for (const { id } of force ? databases.hostRemovals(hostId) : []) {
      const child = await databases.removeHost(id, hostId, task.task_id)
      if (child === undefined) continue
      updateTasks.push(child)
      await tasks.log(task.task_id, `${child.type === 'delete' ? 'deleting' : 'updating'} database '${id}'`, { database_id: id, task_id: child.task_id })
    }
    const now = rfc3339()
    await state.change({ op: 'host.remove', entity: hostId }, d => {
      d.removed_peers[record.peer_id] = { host_id: hostId, removed_at: now }
      delete d.hosts[hostId]
      // The removed host may know outstanding join tokens: they stop working with it.
      for (const id of Object.keys(d.join_tokens ?? {})) delete d.join_tokens?.[id]
      // Removing a host without databases on it is a document change only: it completes as it is written.
      const stored = d.tasks[task.task_id]
      if (updateTasks.length === 0 && stored !== undefined) transitionTask(stored, 'completed', { at: now })
    })
    await tasks.log(task.task_id, `removed host '${hostId}'`, { host_id: hostId, force })
    return { task: tasks.get(task.task_id) ?? task, updateTasks }
  }

  /** Until no node of a database keeps its primary on the host while it has a replica elsewhere. */
  private async awaitFailovers (hostId: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const waiting = this.deps.databases.hostRemovals(hostId).flatMap(r => r.edit.awaitingFailover.map(node => `node ${node} of database ${r.id}`))
      if (waiting.length === 0) return
      if (Date.now() > deadline) {
        throw new InvalidInputError(`cannot remove host '${hostId}' yet: no instance on another host serves as the primary of ${waiting.join(', ')} (a dead host's replica takes over by itself within seconds; switch a live host's primary over first)`)
      }
      await sleep(200)
    }
  }

  /**
   * Once the document has arrived, makes sure this host's record is in it and current. Runs on start and after
   * every document change; a no-op when nothing differs.
   */
  registerSelf (): void {
    const { state, log, config } = this.deps
    const mesh = this.deps.mesh()
    if (!state.initialized || mesh === undefined || this.registering || this.deps.stopping()) return
    const own = state.doc.hosts?.[config.hostId]
    if (own !== undefined && own.peer_id !== mesh.peerId) {
      log.error({ hostId: config.hostId, peerId: own.peer_id }, 'another peer holds this host id in the cluster; not registering')
      return
    }
    if (state.doc.removed_peers?.[mesh.peerId] !== undefined) {
      log.warn('this host was removed from the cluster')
      return
    }
    if (own !== undefined && sameRecord(own, this.ownRecord(own.joined_at))) return
    this.registering = true
    void this.writeOwnRecord().catch((err: unknown) => { log.error({ err }, 'failed to register this host') })
      .finally(() => { this.registering = false })
  }

  /** Dials every host the document lists (the bootstrap peer is only the first contact), and denies removed ones. */
  keepMeshConnected (bootstrap: readonly string[]): void {
    const mesh = this.deps.mesh()
    if (mesh === undefined || this.deps.stopping()) return
    const doc = this.deps.state.doc
    for (const peer of Object.keys(doc.removed_peers ?? {})) mesh.deny(peer)
    const hosts = Object.values(doc.hosts ?? {}).filter(h => h.id !== this.deps.config.hostId)
    if (hosts.length === 0 && mesh.connectedPeers().length === 0) this.dialBootstrap(bootstrap)
    mesh.keepConnected(hosts.map(h => ({ peerId: h.peer_id, addresses: [...h.peer_addresses] })))
    void this.probeRemoval()
  }

  /**
   * A removed host never gets the document that removed it: every member refuses its peer. While it reaches no
   * peer, it asks the members' APIs (at start, before its reconciler's first pass, then every REMOVAL_PROBE_MS)
   * whether it is still one of them; when a member says it is not, it writes its own removal into the document it
   * holds, as the members did, so that everything reading the document acts on it (the reconciler first: it
   * removes this host's instances). Resolves once the members answered (each within 2 s).
   */
  async probeRemoval (): Promise<void> {
    const { state, config, log } = this.deps
    const mesh = this.deps.mesh()
    if (mesh === undefined || this.probing || this.removed || !this.initialized || this.deps.stopping()) return
    const members = Object.values(state.doc.hosts ?? {}).filter(h => h.id !== config.hostId)
    // A host that just joined is not in every member's document yet: only later does "not listed" mean removed.
    const joinedAt = Date.parse(state.doc.hosts?.[config.hostId]?.joined_at ?? '')
    if (!(Date.now() - joinedAt >= JOINED_SETTLED_MS)) return
    if (members.length === 0 || mesh.connectedPeers().length > 0 || Date.now() - this.lastProbe < REMOVAL_PROBE_MS) return
    this.probing = true
    this.lastProbe = Date.now()
    try {
      const tls = this.deps.tls.memberTls()
      const answers = await Promise.all(members.map(async m => ({ id: m.id, answer: await memberAnswer(m.api_url.replace(/\/+$/, ''), config.hostId, tls) })))
      // Removed when a member says so and no member still lists this host (one that did not hear of it yet would).
      const said = answers.find(a => a.answer === 'removed')?.id
      if (said === undefined || answers.some(a => a.answer === 'listed') || this.removed) return
      log.warn({ member: said }, 'this host was removed from the cluster: its instances go')
      const at = rfc3339()
      await state.change({ op: 'host.removed', entity: config.hostId }, d => {
        d.removed_peers[mesh.peerId] = { host_id: config.hostId, removed_at: at }
        delete d.hosts[config.hostId]
      })
    } catch (err) {
      log.debug({ err }, 'removal probe failed')
    } finally {
      this.probing = false
    }
  }

  dialBootstrap (bootstrap: readonly string[]): void {
    const mesh = this.deps.mesh()
    if (mesh === undefined) return
    for (const address of bootstrap) {
      if (mesh.addresses().includes(address)) continue
      void mesh.dial(address, AbortSignal.timeout(5000)).catch((err: unknown) => {
        this.deps.log.debug({ address, err: (err as Error).message }, 'bootstrap dial failed; will retry')
      })
    }
  }

  private checkToken (token: string): void {
    this.requireInitialized()
    this.deps.joinTokens.verify(token, this.trustFingerprint())
  }

  /** What join tokens name: the cluster CA with TLS, the cluster key without. */
  private trustFingerprint (): string {
    return this.deps.tls.fingerprint() ?? this.key().fingerprint()
  }

  private key (): ClusterKey {
    const key = this.deps.clusterKey()
    if (key === undefined) throw new ClusterNotInitializedError()
    return key
  }

  private ownRecord (joinedAt: string): HostRecord {
    const { config } = this.deps
    const mesh = this.deps.mesh()
    return {
      id: config.hostId,
      peer_id: mesh?.peerId ?? '',
      peer_addresses: mesh?.addresses() ?? [],
      client_addresses: config.clientAddresses,
      api_url: config.apiUrl,
      orchestrator: config.orchestrator,
      data_dir: config.dataDir,
      cpus: osCpus().length,
      memory: totalmem(),
      joined_at: joinedAt,
      document_format: DOCUMENT_FORMAT
    }
  }

  private async writeOwnRecord (): Promise<void> {
    const { state, config } = this.deps
    const existing = state.doc.hosts?.[config.hostId]
    const record = this.ownRecord(existing?.joined_at ?? new Date().toISOString())
    await state.change({ op: existing === undefined ? 'host.join' : 'host.update', entity: record.id }, d => {
      const current = d.hosts[record.id]
      if (current === undefined) {
        d.hosts[record.id] = record
        return
      }
      // Field by field, so a concurrent removal (a delete of the whole record) still wins.
      for (const [k, v] of Object.entries(record) as Array<[keyof HostRecord, HostRecord[keyof HostRecord]]>) {
        if (JSON.stringify(current[k]) !== JSON.stringify(v)) Object.assign(current, { [k]: v })
      }
    })
  }
}

function sameRecord (a: HostRecord, b: HostRecord): boolean {
  return JSON.stringify(toSorted(a)) === JSON.stringify(toSorted(b))
}

function toSorted (r: HostRecord): unknown {
  return Object.fromEntries(Object.entries(r).sort(([x], [y]) => x.localeCompare(y)).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]))
}

/** A host has instances while any database spec places a node on it. */
function hostHasInstances (databases: Record<string, DatabaseRecord>, hostId: string): boolean {
  return Object.values(databases).some((db) => {
    if (db.deleted) return false
    const nodes = decodeSpec(db.spec).nodes
    return Array.isArray(nodes) && nodes.some((n: { host_ids?: unknown }) => Array.isArray(n.host_ids) && n.host_ids.includes(hostId))
  })
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
