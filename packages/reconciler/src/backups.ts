import { type BackupRequest, effectiveNode, instanceId, latestCronTick, nodePrimary, type Startable } from '@pgmesh/model'
import type { InstanceStatus, Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import type { ReconcilerHost } from './deps.js'
import { readDesired } from './desired.js'
import { PeriodicPass } from './periodic-pass.js'

export interface BackupRunnerDeps {
  host: ReconcilerHost
  orchestrator: Pick<Orchestrator, 'backup'>
  /** This host's instances that hold their node's lease now (from the HA loop). */
  held: () => readonly string[]
  /** A local instance as last listed. */
  local: (instanceId: string) => InstanceStatus | undefined
  taskLog: (taskId: string, message: string, fields?: Record<string, unknown>) => Promise<void>
  logger: Logger
  /** How often requests and schedules are looked at; default 1 s. */
  tickMs?: number
  now?: () => number
}

/**
 * Runs node backups on the host that may: the host of the node's primary as the converged document names it, while
 * that primary runs here as a primary and, for a node with replicas, holds the node's lease (see the README's
 * "Backups" for why that makes one runner per node). On each tick it starts the node's requested backups, one at a
 * time, and turns schedules' due cron ticks into requests (a tick missed while no host could run it, during a
 * failover say, is taken once when one can).
 */
export class BackupRunner implements Startable {
  /** Backups running in this process, by task id, with what stops them. */
  private readonly running = new Map<string, AbortController>()
  /** Nodes (`<db>/<node>`) with a backup running here. */
  private readonly busyNodes = new Set<string>()

  private readonly passes: PeriodicPass

  constructor (private readonly deps: BackupRunnerDeps) {
    this.passes = new PeriodicPass(async () => { await this.pass() }, deps.tickMs ?? 1000, deps.logger, 'backup')
  }

  async start (): Promise<void> {
    this.passes.start()
  }

  async stop (): Promise<void> {
    await this.passes.stop()
  }

  /** One look at every node this host runs the primary of (tests call it directly). */
  async pass (): Promise<void> {
    const { host } = this.deps
    const backups = host.backups
    if (backups === undefined || !host.runtime.initialized) return
    const now = (this.deps.now ?? Date.now)()
    const held = new Set(this.deps.held())
    for (const db of readDesired(host).databases) {
      if (db.deleted || db.paused || db.spec === undefined) continue
      const record = host.document.doc.databases?.[db.id]
      // Most databases have no backups: one look, every second, at each of them must stay cheap.
      const configured = db.spec.backup_config !== undefined || db.spec.nodes.some(n => n.backup_config !== undefined)
      if (!configured && Object.keys(record?.backup_requests ?? {}).length === 0) continue
      const requests = backups.requests(db.id)
      const ticks = record?.backup_ticks ?? {}
      for (const node of db.spec.nodes) {
        const effective = effectiveNode(db.spec, node.name)
        if (effective === undefined) continue
        const primary = nodePrimary(db.id, node.name, effective.host_ids, db.primaries?.[node.name])
        if (primary === undefined || primary.instanceId !== instanceId(db.id, node.name, host.hostId)) continue
        const status = this.deps.local(primary.instanceId)
        const mayRun = status?.state === 'running' && status.role === 'primary' && (effective.host_ids.length < 2 || held.has(primary.instanceId))
        if (!mayRun) continue
        const nodeRequests = requests.filter(r => r.node_name === node.name)
        await this.settleInterrupted(db.id, nodeRequests)
        for (const schedule of effective.backup_config?.schedules ?? []) {
          const latest = latestCronTick(schedule.cron_expression, now)
          if (latest === undefined) continue
          const taken = ticks[`${node.name}/${schedule.id}`]
          if (taken !== undefined && Date.parse(taken) >= latest) continue
          // A schedule seen for the first time starts from its latest tick; its earlier ones are not backups owed.
          const task = await backups.tick(db.id, node.name, schedule.id, new Date(latest).toISOString(), taken === undefined ? undefined : schedule.type)
          if (task !== undefined) nodeRequests.push({ task_id: task.task_id, node_name: node.name, type: schedule.type, schedule_id: schedule.id })
        }
        const next = nodeRequests.find(r => host.tasks.get(r.task_id)?.status === 'pending')
        const key = `${db.id}/${node.name}`
        // A request whose node lost its backup_config meanwhile runs too, and fails saying so.
        if (next === undefined || this.busyNodes.has(key)) continue
        this.busyNodes.add(key)
        const job = this.run(db.id, primary.instanceId, next).finally(() => {
          this.busyNodes.delete(key)
        })
        this.passes.track(job)
      }
    }
  }

  /**
   * A backup this host started and no longer runs (the daemon restarted meanwhile) ended with the process; a canceled
   * one is stopped, or, not started yet, never starts.
   */
  private async settleInterrupted (databaseId: string, requests: readonly BackupRequest[]): Promise<void> {
    const { host } = this.deps
    for (const r of requests) {
      const status = host.tasks.get(r.task_id)?.status
      const running = this.running.get(r.task_id)
      if (status === 'canceling') {
        if (running !== undefined) running.abort()
        else if (r.host_id === undefined || r.host_id === host.hostId) await host.backups?.finished(databaseId, r.task_id, undefined, true)
        continue
      }
      if (r.host_id !== host.hostId || running !== undefined || status !== 'running') continue
      await host.backups?.finished(databaseId, r.task_id, 'the backup was interrupted (its host restarted)')
    }
  }

  private async run (databaseId: string, instance: string, request: BackupRequest): Promise<void> {
    const { host, orchestrator } = this.deps
    const backups = host.backups
    if (backups === undefined) return
    const stop = new AbortController()
    this.running.set(request.task_id, stop)
    try {
      // Canceled before it started: the next pass settles it.
      if (!await backups.started(databaseId, request.task_id, host.hostId, instance)) return
      if (orchestrator.backup === undefined) throw new Error('this host\'s orchestrator cannot take backups yet')
      // Lines are logged in order, without holding pgBackRest up.
      let logged = Promise.resolve()
      const onLine = (line: string): void => { logged = logged.then(async () => { await this.deps.taskLog(request.task_id, line, { instance_id: instance }) }) }
      const started = Date.now()
      try {
        await orchestrator.backup(instance, {
          type: request.type,
          ...(request.annotations === undefined ? {} : { annotations: request.annotations }),
          ...(request.backup_options === undefined ? {} : { options: request.backup_options })
        }, onLine, stop.signal)
      } finally {
        await logged
      }
      this.deps.logger.info({ instanceId: instance, taskId: request.task_id, ms: Date.now() - started }, 'backup done')
      await backups.finished(databaseId, request.task_id, undefined)
    } catch (err) {
      this.deps.logger.warn({ instanceId: instance, taskId: request.task_id, err: (err as Error).message }, stop.signal.aborted ? 'backup canceled' : 'backup failed')
      await backups.finished(databaseId, request.task_id, stop.signal.aborted ? undefined : (err as Error).message, stop.signal.aborted).catch(() => {})
    } finally {
      this.running.delete(request.task_id)
    }
  }
}
