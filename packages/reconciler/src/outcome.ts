import { instanceId, nodePrimary, type ObservedInstance } from '@pgmesh/model'
import type { DesiredDatabase } from './types.js'

export type Outcome = { status: 'running' } | { status: 'completed' } | { status: 'failed', error: string }

/**
 * How long a task waits for a subscription it needs that is failing (down while its provider's primary is available,
 * as the subscriber reports it in `failing_since`) before it fails with the subscription's error. Counted from the
 * later of the task's start and the failure's, so every task gets this long to see replication work. 60 s is an
 * order of magnitude above what pgmesh's own restarts need (a subscription stalled by a provider's restart is
 * restarted 1.5 s after the provider is back), and far below the minutes a task used to hang.
 */
export const REPLICATION_FAILURE_BOUND_MS = 60_000

/**
 * What the task asks beyond the spec: `goneHosts`, an update's `remove_host` (and a host removal's updates): hosts
 * treated as gone; `force`, a delete that does not wait for unreachable hosts.
 */
export interface OutcomeTask { goneHosts?: readonly string[], force?: boolean }

/** The time an outcome is judged at, and when the task started (both ms since the epoch). */
export interface OutcomeClock { now: number, taskStartedAt: number }

/**
 * Whether a database's current task is done, from what the hosts report: every instance at the task's generation
 * and available with no restart pending, every primary subscribed to every other node; for a delete, no instance left anywhere. It fails when
 * an instance failed at the generation, or a subscription it needs has been failing for REPLICATION_FAILURE_BOUND_MS.
 * Pure: the time comes in `clock`. `reachable` are the hosts whose heartbeats are current: an unreachable host's
 * instances are unknown, so a delete that involves it waits.
 */
export function outcome (db: DesiredDatabase, cluster: readonly ObservedInstance[], reachable: ReadonlySet<string>, clock: OutcomeClock, task: OutcomeTask = {}): Outcome {
  const gone = new Set(task.goneHosts ?? [])
  const mine = cluster.filter(i => i.database_id === db.id && !gone.has(i.host_id))
  if (db.deleted) {
    const hosts = new Set((db.spec?.nodes ?? []).flatMap(n => n.host_ids))
    const waiting = task.force !== true && [...hosts].some(h => !gone.has(h) && !reachable.has(h))
    return mine.length === 0 && !waiting ? { status: 'completed' } : { status: 'running' }
  }
  const withGone = db.spec
  if (withGone === undefined) return { status: 'failed', error: 'the merged spec is not valid; update the database to fix it' }
  // Hosts the task treats as gone (remove_host): neither their instances nor the nodes left only on them count.
  const spec = gone.size === 0
    ? withGone
    : { ...withGone, nodes: withGone.nodes.map(n => ({ ...n, host_ids: n.host_ids.filter(h => !gone.has(h)) })).filter(n => n.host_ids.length > 0) }
  // An in-place restore is done when its node restores are (their runner says how each ended), and then as an update.
  if (Object.keys(db.restoring ?? {}).length > 0) return { status: 'running' }
  const byId = new Map(mine.map(i => [i.id, i]))
  // An instance the spec no longer places (a removed node or replica) must be gone first.
  const placed = new Set(spec.nodes.flatMap(n => n.host_ids.map(h => instanceId(db.id, n.name, h))))
  if (mine.some(i => !placed.has(i.id))) return { status: 'running' }
  const failed = mine.find(i => i.state === 'failed' && i.generation >= db.generation)
  if (failed !== undefined) return { status: 'failed', error: `instance ${failed.id}: ${failed.error ?? 'failed'}` }
  const broken = failingSubscription({ ...db, spec }, byId, clock)
  if (broken !== undefined) return { status: 'failed', error: broken }
  for (const node of spec.nodes) {
    const primary = nodePrimary(db.id, node.name, node.host_ids, db.primaries?.[node.name])
    for (const hostId of node.host_ids) {
      const id = instanceId(db.id, node.name, hostId)
      const instance = byId.get(id)
      if (instance === undefined || instance.state !== 'available' || instance.generation < db.generation || instance.pending_restart === true) return { status: 'running' }
      if (id !== primary?.instanceId || spec.nodes.length < 2) continue
      const subscribed = new Set((instance.subscriptions ?? []).filter(s => s.status === 'replicating').map(s => s.provider_node))
      if (spec.nodes.some(other => other.name !== node.name && !subscribed.has(other.name))) return { status: 'running' }
    }
  }
  return { status: 'completed' }
}

/** The first subscription between the spec's nodes that has been failing too long for this task, described. */
function failingSubscription (db: DesiredDatabase, byId: ReadonlyMap<string, ObservedInstance>, clock: OutcomeClock): string | undefined {
  const nodes = db.spec?.nodes ?? []
  if (nodes.length < 2) return undefined
  for (const node of nodes) {
    const primary = nodePrimary(db.id, node.name, node.host_ids, db.primaries?.[node.name])
    const instance = primary === undefined ? undefined : byId.get(primary.instanceId)
    for (const sub of instance?.subscriptions ?? []) {
      if (sub.failing_since === undefined || !nodes.some(n => n.name === sub.provider_node && n.name !== node.name)) continue
      const since = Math.max(Date.parse(sub.failing_since), clock.taskStartedAt)
      // Written so that a time that does not parse (NaN) never fails a task.
      if (!(clock.now - since >= REPLICATION_FAILURE_BOUND_MS)) continue
      return `instance ${instance?.id ?? ''}: subscription ${sub.name} has been down since ${sub.failing_since}: ${sub.error ?? 'no error in the server log'}`
    }
  }
  return undefined
}
