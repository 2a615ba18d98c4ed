import type { PendingRestore } from '@pgmesh/cluster'
import { effectiveNode, instanceId, nodePrimary, type ObservedInstance, type Startable } from '@pgmesh/model'
import type { Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import type { AppliedStore } from './applied-store.js'
import type { ReconcilerHost } from './deps.js'
import { readDesired } from './desired.js'
import { PeriodicPass } from './periodic-pass.js'

/** The abort reason of a canceled restore (any other abort is this daemon stopping: the restore runs again later). */
const CANCELED = 'canceled'

/** How long a node restore waits for its replicas to go and for the other nodes to stop replicating with it. */
const DETACH_TIMEOUT_MS = 5 * 60_000

export interface RestoreRunnerDeps {
  host: ReconcilerHost
  orchestrator: Pick<Orchestrator, 'restore'>
  applied: () => AppliedStore | undefined
  /**
   * Drops what the subscription poller last saw of the instance's replication. Until its membership is built again
   * that report would say the restored node still subscribes to every other, and the restore task would complete
   * before it does: writes made then were lost to the nodes that subscribed later.
   */
  forgetReplication: (instanceId: string) => void
  taskLog: (taskId: string, message: string, fields?: Record<string, unknown>) => Promise<void>
  logger: Logger
  /** How often requests are looked at; default 1 s. */
  tickMs?: number
  /** How often a restore looks again at what it waits for; default 500 ms. */
  pollMs?: number
}

/**
 * Runs in-place node restores on the host that may: the host of the node's primary as the converged document names
 * it (one host per node, the same rule as backups). Per node: wait until the node's replicas are gone and no other
 * node subscribes to it any more (the planner does both as soon as the restore is in the document), restore the
 * primary with pgBackRest (the orchestrator also strips the replication state the backup brought along: the
 * extension's node, its subscriptions, logical slots and replication origins), then hand the node back to the planner, which makes it a
 * member again and clones its replicas afresh. Idempotent: a host that restarted in the middle runs it again from
 * the start.
 */
export class RestoreRunner implements Startable {
  /** Node restores running in this process, by task id. */
  private readonly running = new Map<string, AbortController>()

  private readonly passes: PeriodicPass

  constructor (private readonly deps: RestoreRunnerDeps) {
    this.passes = new PeriodicPass(async () => { await this.pass() }, deps.tickMs ?? 1000, deps.logger, 'restore')
  }

  async start (): Promise<void> {
    this.passes.start()
  }

  async stop (): Promise<void> {
    for (const stop of this.running.values()) stop.abort()
    await this.passes.stop()
  }

  /** One look at every database with node restores under way (tests call it directly). */
  async pass (): Promise<void> {
    const { host } = this.deps
    const restores = host.restores
    if (restores === undefined || !host.runtime.initialized) return
    for (const db of readDesired(host).databases) {
      if (db.deleted || db.spec === undefined || Object.keys(db.restoring ?? {}).length === 0) continue
      for (const pending of restores.pending(db.id)) {
        const { request } = pending
        const effective = effectiveNode(db.spec, request.node_name)
        if (effective === undefined) continue
        const primary = nodePrimary(db.id, request.node_name, effective.host_ids, db.primaries?.[request.node_name])
        if (primary === undefined || primary.instanceId !== instanceId(db.id, request.node_name, host.hostId)) continue
        const status = host.tasks.get(request.task_id)?.status
        // Canceled, its own task or the database's restore task: a running pgBackRest is stopped (its process group),
        // one not started never starts.
        const parentStatus = host.tasks.get(request.parent_id)?.status
        // (The database's task may be settled canceled by the database's own task handling before this pass looks.)
        if (status === 'canceling' || ((status === 'pending' || status === 'running') && (parentStatus === 'canceling' || parentStatus === 'canceled'))) {
          const running = this.running.get(request.task_id)
          if (running !== undefined) running.abort(CANCELED)
          else if (request.host_id === undefined || request.host_id === host.hostId) await restores.canceled(db.id, request.task_id)
          continue
        }
        if (this.running.has(request.task_id) || (status !== 'pending' && status !== 'running')) continue
        const stop = new AbortController()
        this.running.set(request.task_id, stop)
        const job = this.run(db.id, db.spec.database_name, primary.instanceId, pending, stop.signal).finally(() => {
          this.running.delete(request.task_id)
        })
        this.passes.track(job)
      }
    }
  }

  private async run (databaseId: string, databaseName: string, instance: string, pending: PendingRestore, signal: AbortSignal): Promise<void> {
    const { host, orchestrator } = this.deps
    const restores = host.restores
    const { request, restore } = pending
    const taskId = request.task_id
    if (restores === undefined) return
    const log = async (message: string, fields?: Record<string, unknown>): Promise<void> => { await this.deps.taskLog(taskId, message, fields) }
    try {
      if (!await restores.started(databaseId, taskId, host.hostId, instance)) return
      if (orchestrator.restore === undefined) throw new Error('this host\'s orchestrator cannot restore yet')
      const repo = restore.repository
      // What is restored from, without a secret: the source node and where its repository is.
      await log(`restoring instance ${instance} from node ${restore.sourceNodeName} of database ${restore.sourceDatabaseId} (${repo.type} repository` +
        `${repo.base_path === undefined ? '' : ` under ${repo.base_path}`}${repo.s3_bucket === undefined ? '' : ` in bucket ${repo.s3_bucket}`})`, { instance_id: instance })
      await this.detached(databaseId, request.node_name, instance, signal, log)
      let logged = Promise.resolve()
      const onLine = (line: string): void => { logged = logged.then(async () => { await log(line, { instance_id: instance }) }) }
      const started = Date.now()
      try {
        await orchestrator.restore(instance, { ...restore, databaseName }, onLine, signal)
      } finally {
        await logged
      }
      await log(`restored, promoted and its replication state reset in ${Math.round((Date.now() - started) / 100) / 10} s`)
      // The node's membership is built again from scratch by the next pass (its own subscriptions, then the others').
      const applied = this.deps.applied()?.get(instance)
      if (applied !== undefined) {
        const { replicationHash: _, ...rest } = applied
        await this.deps.applied()?.set(rest)
      }
      this.deps.forgetReplication(instance)
      this.deps.logger.info({ instanceId: instance, taskId, ms: Date.now() - started }, 'node restored')
      await restores.finished(databaseId, taskId, undefined)
    } catch (err) {
      const message = (err as Error).message
      const canceled = signal.aborted && signal.reason === CANCELED
      this.deps.logger.warn({ instanceId: instance, taskId, err: message }, canceled ? 'restore canceled' : signal.aborted ? 'restore interrupted' : 'restore failed')
      // A restore interrupted by this daemon stopping runs again when it starts.
      if (canceled) await restores.canceled(databaseId, taskId).catch(() => {})
      else if (!signal.aborted) await restores.finished(databaseId, taskId, message).catch(() => {})
    }
  }

  /**
   * Until the node's replicas are gone and no other node's primary subscribes to it: once the others have dropped
   * their subscriptions (and the slots the node used on them), the restored node's own subscriptions start afresh.
   */
  private async detached (databaseId: string, nodeName: string, instance: string, signal: AbortSignal, log: (m: string) => Promise<void>): Promise<void> {
    const deadline = Date.now() + DETACH_TIMEOUT_MS
    let said = ''
    for (;;) {
      signal.throwIfAborted()
      const cluster = this.deps.host.health.clusterInstances().filter(i => i.database_id === databaseId)
      const restoring = new Set(Object.keys(readDesired(this.deps.host).databases.find(d => d.id === databaseId)?.restoring ?? {}))
      const waiting = waitingFor(cluster, nodeName, instance, restoring)
      if (waiting.length === 0) return
      const text = `waiting for ${waiting.join(', ')}`
      if (text !== said) await log(text)
      said = text
      if (Date.now() > deadline) throw new Error(`timed out ${text}`)
      await new Promise(resolve => setTimeout(resolve, this.deps.pollMs ?? 500))
    }
  }
}

/**
 * What a node restore still waits for: the node's other instances, and other nodes' subscriptions to it (a node
 * being restored too is not waited for: its own data, subscriptions and slots are replaced anyway).
 */
export function waitingFor (cluster: readonly ObservedInstance[], nodeName: string, primaryInstance: string, restoring: ReadonlySet<string>): string[] {
  const out: string[] = []
  for (const i of cluster) {
    if (i.node_name === nodeName && i.id !== primaryInstance) out.push(`replica ${i.id} to be removed`)
    if (i.node_name !== nodeName && !restoring.has(i.node_name) && (i.subscriptions ?? []).some(s => s.provider_node === nodeName)) {
      out.push(`node ${i.node_name} to stop subscribing to ${nodeName}`)
    }
  }
  return out
}
