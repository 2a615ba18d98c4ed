import type { DesiredDatabaseRecord } from '@pgmesh/cluster'
import type { KeptLease } from '@pgmesh/lease'
import { instanceId, nodePrimary, type NodePrimary, type ObservedInstance, type PrimaryChangeRequest, type Startable } from '@pgmesh/model'
import type { InstanceStatus, Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import type { ReconcilerHost } from './deps.js'
import { handOver, type HandOverContext, stopAndRelease } from './handover.js'
import type { InstanceAdmin } from './instance-admin.js'
import type { InstanceQueues } from './queue.js'
import { rollsByHandOver, rollWait } from './roll.js'

/**
 * How long before its lease's end a primary that could not renew stops taking writes: 625 ms of the default 2.5 s.
 * Making it read-only takes milliseconds; the rest is slack for a loaded host (packages/lease/README.md, Timings).
 */
const FENCE_SHARE = 0.25
/** A primary's host silent for this long may have died: its replicas start asking for the lease. */
const SILENT_MS = 1500
const TICK_MS = 250
/** How long stopping a primary waits for its replica to be eligible to take over before handing over anyway. */
const STOP_WAITS_FOR_ELIGIBLE_MS = 30_000
/** How long a stopping daemon waits for a switchover under way (its own steps time out after 30 s). */
const HAND_OVER_WAIT_MS = 45_000

export interface HighAvailabilityDeps {
  host: ReconcilerHost
  admin: Pick<InstanceAdmin, 'setReadOnly' | 'synchronousNow' | 'drainToPeers' | 'waitReplayed'>
  /** Used only inside jobs of the instance queues: the loop itself never stops or starts a server. */
  control: Pick<Orchestrator, 'stopInstance' | 'startInstance'>
  queues: InstanceQueues
  logger: Logger
  requeue: () => void
  localStatus: (instanceId: string) => InstanceStatus | undefined
  taskLog: (taskId: string, message: string, fields?: Record<string, unknown>) => Promise<void>
}

/**
 * Primaryship of this host's nodes that have replicas. The primary keeps its node's lease (a majority of the
 * cluster's hosts grants it) and stops taking writes when it cannot renew in time; a replica takes the lease only
 * when the primary looks gone and the previous lease has run out, records the new term in the document, and only
 * then gets promoted (the planner's promote-instance). Planned switchovers hand the lease over after the candidate
 * has replayed everything. Single-instance nodes need no lease: they keep taking writes in any partition.
 *
 * The loop decides and publishes (held leases, fenced primaries, synchronous standbys); the instance queues carry
 * the decisions out: fencing as an `immediate` job (it never waits for a running action), unfencing and hand-overs
 * as `high` ones (ahead of the planner's actions). It never stops or starts a server itself.
 */
export class HighAvailability implements Startable {
  private readonly kept = new Map<string, KeptLease>()
  /** Primaries stopped because they lost their lease: the planner keeps them stopped. */
  readonly fenced = new Set<string>()
  /** Primaries this process has looked at since it started. */
  private readonly seen = new Set<string>()
  /** Primaries found running at start, until this process holds their lease: the process before may have held it. */
  private readonly foundRunning = new Set<string>()
  private readonly highestSeen = new Map<string, number>()
  /** Nodes with a switchover or takeover under way on this host. */
  private readonly busy = new Set<string>()
  private timer: NodeJS.Timeout | undefined
  /** A tick of its own for when a lease a replica waits for ends (the voters said when), ahead of the regular one. */
  private askAgain: NodeJS.Timeout | undefined
  private ticking = false
  private stopping = false
  /** Switchovers and hand-overs under way; stop() waits for them. */
  private readonly handingOver = new Set<Promise<void>>()
  /** Per node: since when stopping its primary waits for a replica to be eligible. */
  private readonly stopWaiting = new Map<string, number>()
  /** Primaries with an unfence job queued or running. */
  private readonly unfencing = new Set<string>()
  private readonly log: Logger
  private readonly host: ReconcilerHost

  constructor (private readonly deps: HighAvailabilityDeps) {
    this.log = deps.logger
    this.host = deps.host
  }

  start (): void {
    this.stopping = false
    this.timer = setInterval(() => { void this.tick() }, TICK_MS)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    clearTimeout(this.askAgain)
    this.stopping = true
    // A hand-over cut in half leaves the node without a primary until the lease times out: let it finish.
    const finishing = Promise.allSettled([...this.handingOver])
    let waited: NodeJS.Timeout | undefined
    await Promise.race([finishing, new Promise(resolve => { waited = setTimeout(resolve, HAND_OVER_WAIT_MS) })])
    clearTimeout(waited)
    for (const k of this.kept.values()) await k.stop()
    this.kept.clear()
  }

  /** Local instances holding their node's lease right now. */
  held (): string[] {
    return [...this.kept.values()].filter(k => k.held()).map(k => k.holder)
  }

  private async tick (): Promise<void> {
    const leases = this.host.runtime.leases
    if (this.ticking || leases === undefined || !this.host.runtime.initialized) return
    this.ticking = true
    try {
      const me = this.host.hostId
      const cluster = this.host.health.clusterInstances()
      const seen = new Set<string>()
      for (const db of this.host.databases.desired()) {
        if (db.deleted || db.spec === undefined) continue
        for (const node of db.spec.nodes) {
          if (node.host_ids.length < 2 || !node.host_ids.includes(me)) continue
          const key = `${db.id}/${node.name}`
          seen.add(key)
          if (this.busy.has(key)) continue
          const primary = nodePrimary(db.id, node.name, node.host_ids, db.primaries[node.name])
          if (primary === undefined) continue
          const mine = instanceId(db.id, node.name, me)
          if (primary.instanceId === mine) await this.asPrimary(db, node.name, key, mine, primary, cluster)
          else await this.asReplica(db, node.name, node.host_ids, key, mine, primary, cluster)
        }
      }
      for (const [key, k] of this.kept) {
        if (seen.has(key) || this.busy.has(key)) continue
        await k.stop()
        this.kept.delete(key)
      }
      // A node back to a single instance (or gone) has no synchronous standbys any more.
      for (const id of this.synchronous.keys()) {
        if (![...this.kept.values()].some(k => k.holder === id)) this.synchronous.delete(id)
      }
    } catch (err) {
      this.log.warn({ err }, 'high-availability pass failed')
    } finally {
      this.ticking = false
    }
  }

  private keep (key: string, holder: string, term: number, databaseId: string): KeptLease | undefined {
    const leases = this.host.runtime.leases
    if (leases === undefined) return undefined
    const current = this.kept.get(key)
    if (current !== undefined && current.holder === holder && current.term === term) return current
    void current?.stop()
    const kept = leases.keep(key, holder, term, Math.round(leases.options.durationMs * FENCE_SHARE), () => { void this.fence(databaseId, holder) }, this.foundRunning.has(holder))
    this.kept.set(key, kept)
    return kept
  }

  private async drop (key: string): Promise<void> {
    const k = this.kept.get(key)
    if (k === undefined) return
    this.kept.delete(key)
    await k.stop()
  }

  private async asPrimary (db: DesiredDatabaseRecord, nodeName: string, key: string, mine: string, primary: NodePrimary, cluster: ObservedInstance[]): Promise<void> {
    const operation = db.instanceOperations[mine]
    if (operation?.stopped === true) {
      await this.stopPrimary(db, nodeName, key, mine, primary, operation.task_id, cluster)
      return
    }
    if (!this.seen.has(mine)) {
      this.seen.add(mine)
      // The fenced set lives in memory: a primary this daemon finds at start may have been fenced (read-only, set
      // with ALTER SYSTEM, so it survives restarts) by the process before it. It takes writes again only through
      // unfence, once the lease is held; without a grant in time, the keeper has it fenced for real.
      const local = this.deps.localStatus(mine)
      if (local !== undefined && local.role !== 'replica') {
        this.fenced.add(mine)
        this.foundRunning.add(mine)
      }
    }
    const kept = this.keep(key, mine, primary.term, db.id)
    if (kept?.held() === true && this.fenced.has(mine)) this.unfence(mine)
    if (kept?.held() === true && !this.fenced.has(mine)) await this.synchronize(db, nodeName, key, mine, kept, cluster)
    if (kept?.held() === true && !this.fenced.has(mine) && !this.stopping && this.rollOver(db, nodeName, key, mine, primary, kept, cluster)) return
    const request = db.primaryChanges[nodeName]
    if (request === undefined || request.candidate === mine || request.from_term !== primary.term || !this.active(request)) return
    if (request.scheduled_at !== undefined && Date.parse(request.scheduled_at) > Date.now()) return
    if (kept?.held() !== true || this.stopping) return
    this.busy.add(key)
    this.track(this.deps.queues.run(mine, 'high', 'hand-over', async () => { await handOver(this.handOverContext(), { db, nodeName, key, mine, primary, request, cluster, purpose: 'switchover' }) })
      .catch((err: unknown) => { this.log.warn({ node: key, err }, 'switchover failed') })
      .finally(() => { this.busy.delete(key) }))
  }

  /**
   * In its turn of a rolling restart (roll.ts), a primary with a restart pending hands its node over to a replica that
   * holds everything it acknowledged; the planner then rebuilds it as a replica with the new spec. True when started.
   */
  private rollOver (db: DesiredDatabaseRecord, nodeName: string, key: string, mine: string, primary: NodePrimary, kept: KeptLease, cluster: ObservedInstance[]): boolean {
    if (this.deps.localStatus(mine)?.pendingRestart !== true) return false
    if (!rollsByHandOver(db, mine) || rollWait(db, mine, cluster) !== undefined) return false
    const node = db.spec?.nodes.find(n => n.name === nodeName)
    const candidate = node === undefined ? undefined : this.preferredCandidate(db.id, nodeName, node.host_ids, primary, cluster)
    // Not yet eligible (just restarted, not synchronous again): synchronize makes it so, and a later tick hands over.
    if (candidate === undefined || !kept.confirmedEligible.includes(candidate)) return false
    this.log.info({ node: key, from: mine, to: candidate }, 'rolling restart: switching the node over before restarting its primary')
    this.busy.add(key)
    const request: PrimaryChangeRequest = { type: 'switchover', task_id: db.task_id, candidate, from_term: primary.term }
    this.track(this.deps.queues.run(mine, 'high', 'hand-over', async () => { await handOver(this.handOverContext(), { db, nodeName, key, mine, primary, request, cluster, purpose: 'roll' }) })
      .catch((err: unknown) => { this.log.warn({ node: key, err }, 'rolling switchover failed') })
      .finally(() => {
        this.busy.delete(key)
        this.deps.requeue()
      }))
    return true
  }

  /**
   * Which replicas acknowledge this primary's commits (synchronous_standby_names, all of them) and which may take
   * over (the lease's eligibility). A replica that looks gone leaves the voters' eligible list first and only then
   * the synchronous list, so the primary never acknowledges a commit that an eligible replica lacks; a replica
   * back joins the synchronous list first and becomes eligible once Postgres reports it synchronous.
   */
  private async synchronize (db: DesiredDatabaseRecord, nodeName: string, key: string, mine: string, kept: KeptLease, cluster: ObservedInstance[]): Promise<void> {
    const node = db.spec?.nodes.find(n => n.name === nodeName)
    if (node === undefined) return
    const others = node.host_ids.filter(h => instanceId(db.id, nodeName, h) !== mine)
      .filter(h => db.instanceOperations[instanceId(db.id, nodeName, h)]?.stopped !== true)
    const healthy = others.filter(h => this.heardFrom(h))
      .map(h => instanceId(db.id, nodeName, h))
      .filter(id => { const o = cluster.find(i => i.id === id); return o?.role === 'replica' && (o.state === 'available' || o.state === 'modifying') })
    const names = this.synchronous.get(mine) ?? others.map(h => instanceId(db.id, nodeName, h))
    const keep = names.filter(id => healthy.includes(id))
    if (keep.length < names.length) {
      const eligible = kept.eligible.filter(id => keep.includes(id))
      if (eligible.length < kept.eligible.length && !(await kept.setEligible(eligible))) return
      this.log.info({ node: key, synchronous: keep }, 'replicas gone: fewer synchronous standbys')
      this.synchronous.set(mine, keep)
      this.deps.requeue()
      return
    }
    const added = healthy.filter(id => !names.includes(id))
    if (added.length > 0 || !this.synchronous.has(mine)) {
      this.synchronous.set(mine, [...names, ...added].sort())
      this.deps.requeue()
      return
    }
    const pending = names.filter(id => !kept.confirmedEligible.includes(id))
    if (pending.length === 0) return
    const caughtUp = await this.deps.admin.synchronousNow(mine, pending)
    if (caughtUp.length > 0 && await kept.setEligible([...kept.confirmedEligible.filter(id => names.includes(id)), ...caughtUp])) {
      this.log.info({ node: key, eligible: kept.eligible }, 'replicas eligible to take over')
    }
  }

  /** Per local primary: the replicas in its synchronous_standby_names (the planner writes them). */
  readonly synchronous = new Map<string, string[]>()

  private heardFrom (hostId: string): boolean {
    const heard = this.host.health.lastHeardFrom(hostId)
    return heard !== undefined && Date.now() - heard <= SILENT_MS
  }

  /**
   * The user stops a node's primary: like the anchor (its Patroni fails over), the node goes on with a replica. A
   * switchover to the first available replica stops the server; without one the server is stopped here. The lease
   * is given up only once the server is down.
   */
  private async stopPrimary (db: DesiredDatabaseRecord, nodeName: string, key: string, mine: string, primary: NodePrimary, taskId: string, cluster: ObservedInstance[]): Promise<void> {
    const kept = this.kept.get(key)
    if (kept === undefined) return
    if (this.deps.localStatus(mine)?.state === 'stopped') {
      await this.drop(key)
      await this.host.runtime.leases?.release(key, mine, kept.term)
      this.deps.requeue()
      return
    }
    if (!kept.held() || this.stopping) return
    const node = db.spec?.nodes.find(n => n.name === nodeName)
    const candidate = node === undefined ? undefined : this.preferredCandidate(db.id, nodeName, node.host_ids, primary, cluster)
    // A replica just cloned (after a switchover, say) reports available before it streams and before the voters count
    // it as holding everything: handing over to it then could leave the node without a primary. Give it a while.
    if (candidate !== undefined && !kept.confirmedEligible.includes(candidate)) {
      const since = this.stopWaiting.get(key) ?? Date.now()
      this.stopWaiting.set(key, since)
      if (Date.now() - since < STOP_WAITS_FOR_ELIGIBLE_MS && !this.fenced.has(mine)) {
        // Meanwhile the primary goes on making its replicas synchronous and eligible, as it does while it runs.
        await this.synchronize(db, nodeName, key, mine, kept, cluster)
        return
      }
    }
    this.stopWaiting.delete(key)
    this.busy.add(key)
    this.track(this.deps.queues.run(mine, 'high', 'hand-over', async () => {
      if (candidate !== undefined) {
        await handOver(this.handOverContext(), { db, nodeName, key, mine, primary, request: { type: 'switchover', task_id: taskId, candidate, from_term: primary.term }, cluster, purpose: 'stop' })
        return
      }
      await stopAndRelease(this.handOverContext(), key, mine, kept.term, true)
    }).catch((err: unknown) => { this.log.warn({ node: key, err }, 'stopping the primary failed') })
      .finally(() => {
        this.busy.delete(key)
        this.deps.requeue()
      }))
  }

  private track (work: Promise<void>): void {
    this.handingOver.add(work)
    void work.finally(() => { this.handingOver.delete(work) })
  }

  private active (request: PrimaryChangeRequest): boolean {
    const status = this.host.tasks.get(request.task_id)?.status
    return status === 'pending' || status === 'running'
  }

  private async asReplica (db: DesiredDatabaseRecord, nodeName: string, hostIds: string[], key: string, mine: string, primary: NodePrimary, cluster: ObservedInstance[]): Promise<void> {
    await this.drop(key)
    const local = this.deps.localStatus(mine)
    if (local?.state !== 'running' || local.role !== 'replica') return
    const request = db.primaryChanges[nodeName]
    const asked = request?.type === 'failover' && request.candidate === mine && request.from_term === primary.term && this.active(request)
    if (!this.primaryGone(db.id, nodeName, hostIds, primary, cluster)) return
    if (!asked && this.preferredCandidate(db.id, nodeName, hostIds, primary, cluster) !== mine) return
    const leases = this.host.runtime.leases
    if (leases === undefined) return
    const term = Math.max(primary.term, this.highestSeen.get(key) ?? 0) + 1
    const outcome = await leases.request(key, mine, term)
    if (outcome.held && outcome.eligibility?.eligible.includes(mine) !== true) {
      // The last primary did not count this replica as holding everything it acknowledged: promoting it could lose
      // acknowledged commits. It waits (an operator can still bring the old primary back).
      this.log.warn({ node: key, instanceId: mine, eligibility: outcome.eligibility }, 'primary gone, but this replica is not eligible to take over')
      await leases.release(key, mine, term)
      this.highestSeen.set(key, Math.max(this.highestSeen.get(key) ?? 0, term))
      return
    }
    if (!outcome.held) {
      this.log.info({ node: key, instanceId: mine, term, granted: outcome.granted, voters: outcome.voters, freeInMs: outcome.freeInMs }, 'primary gone; the lease is not free yet')
      this.highestSeen.set(key, Math.max(this.highestSeen.get(key) ?? 0, outcome.highestTerm))
      this.askAgainIn(outcome.freeInMs)
      return
    }
    this.log.warn({ node: key, instanceId: mine, term }, 'primary gone: this replica holds the lease and becomes primary')
    this.keep(key, mine, term, db.id)
    await this.host.operations.recordPrimary(db.id, nodeName, term, mine)
    if (asked && request !== undefined) await this.deps.taskLog(request.task_id, `instance ${mine} holds the lease at term ${term}; promoting`)
    this.deps.requeue()
  }

  /**
   * The old primary's grants end between two ticks: asking right then instead of at the next tick saves up to a tick.
   * Longer waits are left to the regular ticks (each asks again and learns anew); none at all (refused for a term, or
   * by a guard) is never retried faster than a tick.
   */
  private askAgainIn (freeInMs: number | undefined): void {
    if (freeInMs === undefined || freeInMs <= 0 || freeInMs >= TICK_MS || this.stopping) return
    clearTimeout(this.askAgain)
    this.askAgain = setTimeout(() => { void this.tick() }, freeInMs)
    this.askAgain.unref()
  }

  private primaryGone (databaseId: string, nodeName: string, hostIds: string[], primary: NodePrimary, cluster: ObservedInstance[]): boolean {
    const primaryHost = hostIds.find(h => instanceId(databaseId, nodeName, h) === primary.instanceId)
    if (primaryHost === undefined) return true
    if (!this.heardFrom(primaryHost)) return true
    const observed = cluster.find(i => i.id === primary.instanceId)
    return observed === undefined || observed.role !== 'primary' || !['available', 'modifying'].includes(observed.state)
  }

  /** The replica that asks for the lease: the first (by id) available one on a host that is heard from. */
  private preferredCandidate (databaseId: string, nodeName: string, hostIds: string[], primary: NodePrimary, cluster: ObservedInstance[]): string | undefined {
    return hostIds
      .filter(h => this.heardFrom(h))
      .map(h => instanceId(databaseId, nodeName, h))
      .filter(id => id !== primary.instanceId)
      .filter(id => { const o = cluster.find(i => i.id === id); return o?.role === 'replica' && o.state === 'available' })
      .sort()[0]
  }

  /**
   * Stops writes at once (read-only, client sessions ended), then stops the server; kept stopped until re-leased.
   * Also for an instance already in `fenced` because it was found at start: its Postgres may still take writes.
   * The decision is published before anything runs (the planner and the queue keep the server stopped from here),
   * and the job is `immediate`: it does not wait for an action running on the instance.
   */
  fence (databaseId: string, id: string): Promise<void> {
    this.fenced.add(id)
    this.log.warn({ databaseId, instanceId: id }, 'lease not renewed in time: fencing the primary')
    const started = Date.now()
    return this.deps.queues.run(id, 'immediate', 'fence', async () => {
      try {
        await this.deps.admin.setReadOnly(id, true)
        // Against the fence margin (FENCE_SHARE of the lease): how close a loaded host comes to it.
        this.log.info({ instanceId: id, ms: Date.now() - started }, 'fenced: the primary takes no more writes')
      } catch (err) {
        this.log.warn({ instanceId: id, err: (err as Error).message }, 'could not make the instance read-only; stopping it')
      }
      await this.deps.control.stopInstance(id).catch((err: unknown) => { this.log.error({ instanceId: id, err }, 'could not stop the fenced instance') })
      this.deps.requeue()
    })
  }

  /** The lease is held again: the server starts and takes writes again, as a `high` job ahead of planned actions. */
  private unfence (id: string): void {
    if (this.unfencing.has(id)) return
    this.unfencing.add(id)
    void this.deps.queues.run(id, 'high', 'unfence', async () => {
      // A fence may have run meanwhile (the lease lost again): unfence only what is still held.
      if (![...this.kept.values()].some(k => k.holder === id && k.held())) return
      this.foundRunning.delete(id)
      this.log.info({ instanceId: id }, 'lease held again: the primary takes writes again')
      await this.deps.control.startInstance(id)
      await this.deps.admin.setReadOnly(id, false)
      this.fenced.delete(id)
      this.deps.requeue()
    }).catch((err: unknown) => { this.log.warn({ instanceId: id, err }, 'high-availability pass failed') })
      .finally(() => { this.unfencing.delete(id) })
  }

  private handOverContext (): HandOverContext {
    return {
      host: this.host,
      admin: this.deps.admin,
      control: this.deps.control,
      fence: (id) => { this.fenced.add(id) },
      drop: async (key) => { await this.drop(key) },
      highestSeen: key => this.highestSeen.get(key) ?? 0,
      taskLog: this.deps.taskLog,
      requeue: this.deps.requeue,
      logger: this.log
    }
  }

  /** Fenced primaries, held leases, synchronous standbys: what the planner reads of this loop. */
  isFenced (id: string): boolean {
    return this.fenced.has(id)
  }

  /** A rebuilt former primary is a plain replica again. */
  forget (id: string): void {
    this.fenced.delete(id)
    this.synchronous.delete(id)
  }
}
