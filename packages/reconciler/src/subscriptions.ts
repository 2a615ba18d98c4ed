import type { ObservedInstance, ObservedSubscription, Startable } from '@pgmesh/model'
import type { InstanceStatus } from '@pgmesh/orchestrator'
import { applyErrors, type JsonLogEntry, JsonLogTail, type Queryable, type ReplicationDriver, type SubscriberLag, type SubscriptionStatus, type UnreplicatedDdl } from '@pgmesh/replication'
import type { Logger } from 'pino'
import type { ReconcilerHost } from './deps.js'
import type { InstanceAdmin } from './instance-admin.js'
import { SubscriptionHealth } from './subscription-health.js'
import type { AppliedInstance } from './types.js'

export interface SubscriptionPollerDeps {
  host: Pick<ReconcilerHost, 'databases' | 'health' | 'metrics'>
  admin: Pick<InstanceAdmin, 'withSession' | 'replicationOf'>
  /** This host's applied records (the primaries whose replication was applied are polled). */
  applied: () => readonly AppliedInstance[]
  local: (instanceId: string) => InstanceStatus | undefined
  /** Asks the loop for a pass (a report changed). */
  requeue: () => void
  logger: Logger
  /** How often (default 1 s). */
  pollMs?: number
  /** A reader of one instance's JSON server log (default: JsonLogTail). */
  newLogTail?: () => { read: (conn: Queryable) => Promise<JsonLogEntry[]> }
}

/** What a local primary's report carries about its replication. */
export interface ReplicationReport {
  subscriptions: ObservedSubscription[]
  kind: string
  /** As a provider: each subscriber node's slot lag here (changes with every write: never a reason for a pass). */
  subscriberLag?: SubscriberLag[]
}

/**
 * Polls the local primaries' subscription status every second, for observed state (and so for task completion), with
 * the apply workers' errors from the server's JSON log, and restarts the subscriptions that stall (SubscriptionHealth).
 */
export class SubscriptionPoller implements Startable {
  private readonly reports = new Map<string, ReplicationReport>()
  /** Per local primary: its subscriptions' errors, failures and restarts, and where its JSON server log was read up to. */
  private readonly health = new Map<string, SubscriptionHealth>()
  private readonly serverLogs = new Map<string, { read: (conn: Queryable) => Promise<JsonLogEntry[]> }>()
  /**
   * Per local primary: the subscriptions a restart disabled and has not yet enabled again. A restart is two
   * statements with a pause between; the server restarting in that pause (a rolling restart) ends the session and
   * would leave the subscription disabled for good, so the next poll finishes the restart.
   */
  private readonly restarting = new Map<string, Set<string>>()
  /** Per local primary: the DDL its automatic DDL replication refused (see @pgmesh/replication). */
  private readonly refusedDdl = new Map<string, UnreplicatedDdl>()
  /**
   * Instances forgotten while a poll runs: that poll's view of them may predate what made them forgotten (a restore,
   * a promotion), so it is dropped rather than reported.
   */
  private readonly forgottenInPoll = new Set<string>()
  private polling = false
  private stopped = false
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly deps: SubscriptionPollerDeps) {}

  start (): void {
    this.stopped = false
    this.timer = setInterval(() => { void this.poll() }, this.deps.pollMs ?? 1000)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    clearInterval(this.timer)
  }

  report (instanceId: string): ReplicationReport | undefined {
    return this.reports.get(instanceId)
  }

  unreplicatedDdl (instanceId: string): UnreplicatedDdl | undefined {
    return this.refusedDdl.get(instanceId)
  }

  /** The instance was removed, rebuilt, restored or promoted: what was known of its replication goes. */
  forget (instanceId: string): void {
    if (this.polling) this.forgottenInPoll.add(instanceId)
    this.reports.delete(instanceId)
    this.health.delete(instanceId)
    this.serverLogs.delete(instanceId)
    this.restarting.delete(instanceId)
    this.refusedDdl.delete(instanceId)
  }

  /** One poll of every local primary. A poll that outlasts the interval is not overlapped: the log tails must not be read twice. */
  async poll (): Promise<void> {
    if (this.stopped || this.polling) return
    this.polling = true
    try {
      await this.pollPrimaries()
    } finally {
      this.polling = false
      this.forgottenInPoll.clear()
    }
  }

  private async pollPrimaries (): Promise<void> {
    const count = { down: 0 }
    for (const record of this.deps.applied()) {
      if (record.replicationHash === undefined) continue
      const status = this.deps.local(record.instanceId)
      if (status?.state !== 'running' || status.role !== 'primary') continue
      const databaseName = this.deps.host.databases.generations().get(record.databaseId)?.databaseName
      if (databaseName === undefined) continue
      try {
        await this.deps.admin.withSession(record.instanceId, databaseName, async conn => { await this.pollOne(record, conn, count) })
      } catch (err) {
        this.deps.logger.debug({ instanceId: record.instanceId, err: (err as Error).message }, 'subscription status not available')
      }
    }
    this.deps.host.metrics.subscriptionsDown.set(count.down)
  }

  /** Adds how many of its subscriptions are down to `count`. */
  private async pollOne (record: AppliedInstance, conn: Queryable, count: { down: number }): Promise<void> {
    const log = this.deps.logger
    const { kind, driver } = await this.deps.admin.replicationOf(conn)
    const errors = await this.readApplyErrors(record.instanceId, driver, conn)
    const rows = await this.finishRestarts(record.instanceId, driver, conn, await driver.subscriptionStatus(conn))
    // Built only when a subscription is down: this runs every second for every local primary.
    let cluster: ObservedInstance[] | undefined
    const providerUp = (node: string): boolean => {
      cluster ??= this.deps.host.health.clusterInstances()
      return cluster.some(i => i.database_id === record.databaseId && i.node_name === node && i.role === 'primary' && i.state === 'available')
    }
    let health = this.health.get(record.instanceId)
    if (health === undefined) {
      health = new SubscriptionHealth()
      this.health.set(record.instanceId, health)
    }
    const previous = this.reports.get(record.instanceId)?.subscriptions
    const { reports, restart } = health.observe({ rows, errors, providerUp, now: Date.now() })
    const subscriberLag = await driver.subscriberLag(conn).catch((err: unknown) => {
      log.debug({ instanceId: record.instanceId, err: (err as Error).message }, 'subscriber lag not available')
      return undefined
    })
    if (this.forgottenInPoll.has(record.instanceId)) {
      // What this poll built for it goes too (a removed instance keeps nothing).
      this.forget(record.instanceId)
      return
    }
    this.reports.set(record.instanceId, { subscriptions: reports, kind, ...(subscriberLag === undefined ? {} : { subscriberLag }) })
    count.down += reports.filter(r => r.status === 'down').length
    for (const report of reports) {
      if (report.error !== undefined && report.error !== previous?.find(p => p.name === report.name)?.error) {
        log.warn({ instanceId: record.instanceId, subscription: report.name, error: report.error }, 'subscription apply worker failed')
      }
    }
    if (JSON.stringify(previous) !== JSON.stringify(reports)) this.deps.requeue()
    for (const name of restart) {
      log.info({ instanceId: record.instanceId, subscription: name }, 'restarting a stalled subscription')
      await this.restartSubscription(record.instanceId, driver, conn, name)
    }
    await this.readUnreplicatedDdl(record.instanceId, driver, conn)
  }

  private async restartSubscription (instanceId: string, driver: ReplicationDriver, conn: Queryable, name: string): Promise<void> {
    let pending = this.restarting.get(instanceId)
    if (pending === undefined) {
      pending = new Set()
      this.restarting.set(instanceId, pending)
    }
    pending.add(name)
    await driver.restartSubscription(conn, name)
    pending.delete(name)
  }

  /**
   * Restarts again the subscriptions an interrupted restart left disabled, and returns the status rows as they are
   * then. pgmesh disables a subscription otherwise only during a node's join, which this leaves alone.
   */
  private async finishRestarts (instanceId: string, driver: ReplicationDriver, conn: Queryable, rows: SubscriptionStatus[]): Promise<SubscriptionStatus[]> {
    const pending = this.restarting.get(instanceId)
    if (pending === undefined || pending.size === 0) return rows
    let restarted = false
    for (const name of [...pending]) {
      if (rows.find(r => r.name === name)?.status !== 'disabled') pending.delete(name)
      else {
        this.deps.logger.info({ instanceId, subscription: name }, 'enabling a subscription whose restart was interrupted')
        await this.restartSubscription(instanceId, driver, conn, name)
        restarted = true
      }
    }
    return restarted ? await driver.subscriptionStatus(conn) : rows
  }

  /** What the node's automatic DDL replication refused, for the instance's report; a new refusal is logged too. */
  private async readUnreplicatedDdl (instanceId: string, driver: ReplicationDriver, conn: Queryable): Promise<void> {
    const found = await driver.unreplicatedDdl(conn)
    const previous = this.refusedDdl.get(instanceId)
    if (found === undefined || found.count === previous?.count) return
    this.refusedDdl.set(instanceId, found)
    this.deps.logger.warn({ instanceId, count: found.count, reason: found.last.reason, role: found.last.role }, 'DDL not replicated to the other nodes')
    this.deps.requeue()
  }

  /** The apply-worker errors this instance logged since the last poll (none when its log is not JSON). */
  private async readApplyErrors (instanceId: string, driver: ReplicationDriver, conn: Queryable): Promise<Array<{ subscription: string, error: string }>> {
    let tail = this.serverLogs.get(instanceId)
    if (tail === undefined) {
      tail = (this.deps.newLogTail ?? (() => new JsonLogTail()))()
      this.serverLogs.set(instanceId, tail)
    }
    const entries = await tail.read(conn)
    // Which worker is which subscription is asked only when something failed.
    if (!entries.some(e => e.error_severity === 'ERROR' || e.error_severity === 'FATAL')) return []
    const errors = applyErrors(entries, await driver.applyWorkers(conn))
    this.deps.host.metrics.subscriptionApplyErrors.inc(errors.length)
    return errors
  }
}
