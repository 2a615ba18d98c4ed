import { join } from 'node:path'
import { isTerminalError, type ObservedInstance, type Startable } from '@pgmesh/model'
import type { InstanceStatus, Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import { AppliedStore } from './applied-store.js'
import { Backoff } from './backoff.js'
import { BackupRunner } from './backups.js'
import { RestoreRunner } from './restores.js'
import type { ReconcilerHost } from './deps.js'
import { type DesiredState, readDesired, toLocal } from './desired.js'
import { ActionExecutor } from './executor.js'
import { Failures } from './failures.js'
import { HighAvailability } from './ha.js'
import { type InstanceAdmin, PgInstanceAdmin } from './instance-admin.js'
import { startAll, stopAll } from './lifecycle.js'
import { plan } from './plan.js'
import { removedHostActions } from './removed-host.js'
import { InstanceQueues } from './queue.js'
import { Reports } from './reports.js'
import { describeWait, rollWait } from './roll.js'
import { TaskSettler } from './settle.js'
import { SubscriptionPoller, type SubscriptionPollerDeps } from './subscriptions.js'
import type { Action } from './types.js'

export interface ReconcilerOptions {
  logger: Logger
  /** Periodic resync, catching whatever events were missed. */
  resyncMs?: number
  /** How often primaries' subscription status is read. */
  subscriptionPollMs?: number
  /** SQL on the local instances (default: pg sessions over the orchestrator's admin socket). Tests pass fakes. */
  admin?: InstanceAdmin
  /** Tests: how the subscription poller reads a server log. */
  newLogTail?: SubscriptionPollerDeps['newLogTail']
  /** Tests: no high-availability loop. */
  highAvailability?: boolean
}

/** What asked for a pass (counted per pass in `pgmesh_reconcile_passes_total`). */
export type PassTrigger = 'start' | 'document' | 'peer' | 'instance' | 'timer' | 'requeue'

/**
 * The reconcile loop of one host: any event (document change, a peer's change, instance exit, timer) only asks for a pass;
 * one pass at a time plans from the converged document and what is observed, hands the actions to the instance
 * queues (retrying failures after a back-off), then settles the tasks this host started. The other jobs are parts
 * of their own: carrying out actions (executor.ts), subscription polling (subscriptions.ts), reports
 * (reports.ts), task settling (settle.ts), high availability (ha.ts, handover.ts).
 */
export class Reconciler implements Startable {
  private applied: AppliedStore | undefined
  private local = new Map<string, InstanceStatus>()
  private readonly failures = new Failures()
  private readonly backoff = new Backoff()
  private readonly queues = new InstanceQueues()
  private readonly admin: InstanceAdmin
  private readonly executor: ActionExecutor
  private readonly subscriptions: SubscriptionPoller
  private readonly reports: Reports
  private readonly settler: TaskSettler
  private readonly ha: HighAvailability | undefined
  private readonly backups: BackupRunner
  private readonly restores: RestoreRunner
  private running: Promise<void> | undefined
  private again = false
  /** What asked first for the pass that runs next. */
  private nextTrigger: PassTrigger | undefined
  /** A pass asked for when the earliest scheduled restart of a local instance is due. */
  private restartWake: { at: number, timer: NodeJS.Timeout } | undefined
  private stopped = false
  private timers: NodeJS.Timeout[] = []
  private readonly log: Logger
  private unsubscribe: (() => void) | undefined
  /** Per local instance with a restart pending: what its database's task log last said it waits for. */
  private readonly rollWaits = new Map<string, string>()

  constructor (private readonly host: ReconcilerHost, private readonly orchestrator: Orchestrator, private readonly options: ReconcilerOptions) {
    this.log = options.logger
    const requeue = (): void => { this.requeue() }
    const local = (id: string): InstanceStatus | undefined => this.local.get(id)
    this.admin = options.admin ?? new PgInstanceAdmin(async id => this.local.get(id) ?? await orchestrator.status(id), this.log, host.superuserPassword ?? (() => undefined))
    this.subscriptions = new SubscriptionPoller({
      host, admin: this.admin, applied: () => this.applied?.all() ?? [], local, requeue, logger: this.log,
      ...(options.subscriptionPollMs === undefined ? {} : { pollMs: options.subscriptionPollMs }),
      ...(options.newLogTail === undefined ? {} : { newLogTail: options.newLogTail })
    })
    this.ha = options.highAvailability === false
      ? undefined
      : new HighAvailability({
        host, admin: this.admin, control: orchestrator, queues: this.queues, logger: options.logger.child({ component: 'ha' }), requeue, localStatus: local,
        taskLog: async (taskId, message, fields) => { await this.taskLog(taskId, message, fields) }
      })
    this.executor = new ActionExecutor({
      orchestrator, applied: () => this.store(), admin: this.admin, failures: this.failures, logger: this.log,
      exists: id => this.local.has(id),
      forgetReplication: id => { this.subscriptions.forget(id) },
      forgetPrimary: id => { this.ha?.forget(id) }
    })
    this.reports = new Reports({
      host, applied: () => this.applied?.all() ?? [], isApplied: id => this.applied?.get(id) !== undefined, local, failures: this.failures, replication: this.subscriptions
    })
    this.backups = new BackupRunner({
      host, orchestrator, held: () => this.ha?.held() ?? [], local, logger: this.log.child({ component: 'backups' }),
      taskLog: async (taskId, message, fields) => { await this.taskLog(taskId, message, fields) }
    })
    this.restores = new RestoreRunner({
      host, orchestrator, applied: () => this.applied, logger: this.log.child({ component: 'restores' }),
      forgetReplication: id => { this.subscriptions.forget(id) },
      taskLog: async (taskId, message, fields) => { await this.taskLog(taskId, message, fields) }
    })
    this.settler = new TaskSettler({ host, taskLog: async (taskId, message) => { await this.taskLog(taskId, message) } })
  }

  /** The parts that run in the background, in start order. */
  private parts (): Startable[] {
    return [this.subscriptions, ...(this.ha === undefined ? [] : [this.ha]), this.backups, this.restores]
  }

  async start (): Promise<void> {
    this.stopped = false
    this.applied = await AppliedStore.open(join(this.host.dataDir, 'reconciler', 'applied.json'))
    await this.refreshLocal()
    const kick = (trigger: PassTrigger) => (): void => { this.requeue(trigger) }
    this.host.document.on('change', kick('document'))
    this.host.runtime.on('initialized', kick('document'))
    // Not every peer's heartbeat (one per peer per second, N-1 passes a second for nothing): only a peer reachable
    // again, gone silent (when it goes: a timer per peer), or reporting other instances (what a pass may wait for:
    // its instance up, its node ready). The periodic pass stays the safety net.
    this.host.runtime.on('peerChanged', kick('peer'))
    this.unsubscribe = this.orchestrator.onEvent(kick('instance'))
    this.timers.push(setInterval(kick('timer'), this.options.resyncMs ?? 5000))
    for (const t of this.timers) t.unref()
    await startAll(this.parts())
    this.requeue('start')
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    clearTimeout(this.restartWake?.timer)
    this.restartWake = undefined
    await stopAll(this.parts())
    this.unsubscribe?.()
    await this.running
  }

  /** Level-triggered: a pass already running is simply run once more after it, however many ask meanwhile. */
  requeue (trigger: PassTrigger = 'requeue'): void {
    if (this.stopped) return
    this.nextTrigger ??= trigger
    if (this.running !== undefined) {
      this.again = true
      return
    }
    this.host.metrics.reconcilePasses?.inc({ trigger: this.nextTrigger })
    this.nextTrigger = undefined
    this.running = this.pass().catch((err: unknown) => { this.log.error({ err }, 'reconcile pass failed') }).finally(() => {
      this.running = undefined
      if (this.again && !this.stopped) {
        this.again = false
        this.requeue(this.nextTrigger)
      }
    })
  }

  /** Waits for the passes in flight (tests). */
  async idle (): Promise<void> {
    while (this.running !== undefined) await this.running
  }

  /** This host's instances as reported in heartbeats and reads (reports.ts). */
  observedInstances (): ObservedInstance[] {
    return this.reports.observedInstances()
  }

  /** One subscription poll now (tests). */
  async pollSubscriptions (): Promise<void> {
    await this.subscriptions.poll()
  }

  private store (): AppliedStore {
    if (this.applied === undefined) throw new Error('the reconciler has not started')
    return this.applied
  }

  private async pass (): Promise<void> {
    // A removed host is no longer initialized, but it still has instances to remove (removed-host.ts).
    const removed = this.host.removedFromCluster?.() === true
    if (!this.host.runtime.initialized && !removed) return
    const desired = readDesired(this.host)
    await this.refreshLocal()
    const fenced = this.ha?.fenced ?? new Set<string>()
    const actions = removed ? removedHostActions([...this.local.values()].map(toLocal), this.store().all()) : plan(desired, {
      local: [...this.local.values()].map(toLocal),
      applied: this.store().all(),
      cluster: this.host.health.clusterInstances(),
      leases: this.ha?.held() ?? [],
      fenced: [...fenced],
      synchronous: Object.fromEntries(this.ha?.synchronous ?? []),
      now: Date.now()
    })
    this.failures.forgetSettled(actions, id => this.local.get(id)?.state === 'running')
    if (!removed) this.wakeForScheduledRestarts(desired)
    const generations = new Map(desired.databases.map(d => [d.id, d.generation]))
    for (const action of actions) {
      if (this.stopped) return
      if (!this.backoff.ready(action)) continue
      // Failed for good at this generation (a major version change): reported failed until the spec changes.
      if (this.failures.blocked(action.instanceId, action.databaseId === undefined ? undefined : generations.get(action.databaseId))) continue
      // A fence, unfence or hand-over of this instance is queued or under way: it requeues once done, and the next
      // pass plans from what it left.
      if (this.queues.urgent(action.instanceId)) continue
      await this.queues.run(action.instanceId, 'normal', action.kind, async () => {
        // Decided again when the job starts, not when it was planned: a primary fenced since (a lost lease, a
        // hand-over stopping it) must not be started again by an action planned before.
        if ((action.kind === 'ensure-instance' || action.kind === 'restart-instance') && fenced.has(action.instanceId)) return
        await this.apply(action, desired)
      })
    }
    if (actions.length > 0) {
      await this.refreshLocal()
      this.host.runtime.beat()
    }
    if (removed) return
    await this.logRollWaits(desired)
    await this.settler.settle(desired)
  }

  /**
   * A restart scheduled for later (`restart_at`) is planned by the first pass after its time: ask for that pass then
   * rather than leaving it to the periodic one, now that peers' heartbeats no longer ask for passes every second.
   */
  private wakeForScheduledRestarts (desired: DesiredState): void {
    const now = Date.now()
    let earliest: number | undefined
    for (const db of desired.databases) {
      for (const [id, operation] of Object.entries(db.instanceOperations ?? {})) {
        const at = operation.restart_at === undefined ? Number.NaN : Date.parse(operation.restart_at)
        if (!this.local.has(id) || !(at > now)) continue
        if (earliest === undefined || at < earliest) earliest = at
      }
    }
    if (earliest === undefined || (this.restartWake !== undefined && this.restartWake.at <= earliest && this.restartWake.at > now)) return
    clearTimeout(this.restartWake?.timer)
    const timer = setTimeout(() => { this.restartWake = undefined; this.requeue('timer') }, earliest - now + 1)
    timer.unref()
    this.restartWake = { at: earliest, timer }
  }

  /** A restart held by the rolling order says in the task log what it waits for, each time that changes. */
  private async logRollWaits (desired: DesiredState): Promise<void> {
    const cluster = this.host.health.clusterInstances()
    const reachable = this.host.health.reachableHosts()
    const waiting = new Set<string>()
    for (const status of this.local.values()) {
      if (status.pendingRestart !== true) continue
      const databaseId = this.applied?.get(status.instanceId)?.databaseId
      const db = desired.databases.find(d => d.id === databaseId)
      if (db === undefined) continue
      const wait = rollWait(db, status.instanceId, cluster)
      if (wait === undefined) continue
      waiting.add(status.instanceId)
      const message = describeWait(status.instanceId, wait, h => h === this.host.hostId || reachable.has(h))
      if (this.rollWaits.get(status.instanceId) === message) continue
      this.rollWaits.set(status.instanceId, message)
      this.log.info({ instanceId: status.instanceId, waitsFor: wait.instanceId, reason: wait.reason }, 'restart waits for its turn')
      await this.taskLog(desired.records.get(db.id)?.taskId, message, { instance_id: status.instanceId })
    }
    for (const id of this.rollWaits.keys()) if (!waiting.has(id)) this.rollWaits.delete(id)
  }

  private async refreshLocal (): Promise<void> {
    this.local = new Map((await this.orchestrator.list()).map(s => [s.instanceId, s]))
  }

  private async taskLog (taskId: string | undefined, message: string, fields?: Record<string, unknown>): Promise<void> {
    if (taskId === undefined) return
    await this.host.tasks.log(taskId, message, { host_id: this.host.hostId, ...fields }).catch(() => {})
  }

  /** One action through the executor; a failure is recorded, and retried after a back-off unless it is terminal. */
  private async apply (action: Action, desired: DesiredState): Promise<void> {
    const taskId = action.databaseId === undefined ? undefined : desired.records.get(action.databaseId)?.taskId
    const operationTask = action.kind === 'stop-instance' || action.kind === 'restart-instance'
      ? desired.databases.find(d => d.id === action.databaseId)?.instanceOperations?.[action.instanceId]?.task_id
      : undefined
    try {
      await this.executor.apply(action, {
        log: async (message, fields) => { await this.taskLog(taskId, message, fields) },
        logOperation: async (message, fields) => { await this.taskLog(operationTask, message, fields) }
      })
      this.backoff.succeeded(action)
    } catch (err) {
      const message = (err as Error).message
      const removal = action.kind === 'remove-instance' || action.kind === 'stop-instance'
      if (isTerminalError(err) && !removal) {
        const generation = desired.databases.find(d => d.id === action.databaseId)?.generation
        this.log.warn({ action: action.kind, instanceId: action.instanceId, err: message }, 'action cannot succeed; not retried until the spec changes')
        this.failures.record(action.instanceId, message, generation ?? -1)
        await this.taskLog(taskId, `error while applying ${action.kind} to ${action.instanceId}: ${message} (not retried until the database is updated)`, { instance_id: action.instanceId })
        return
      }
      this.log.warn({ action: action.kind, instanceId: action.instanceId, err: message }, 'action failed; will retry')
      if (!removal) this.failures.record(action.instanceId, message)
      const delayMs = this.backoff.failed(action)
      setTimeout(() => { this.requeue() }, delayMs).unref()
      await this.taskLog(taskId, `error while applying ${action.kind} to ${action.instanceId}: ${message}`, { instance_id: action.instanceId })
    }
  }
}
