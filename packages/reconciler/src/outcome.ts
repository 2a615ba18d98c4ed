import { nodePrimary, type ObservedInstance } from '@pgmesh/host'
import { instanceId } from '@pgmesh/model'
import type { DesiredDatabase } from './types.js'

export type Outcome = { status: 'running' } | { status: 'completed' } | { status: 'failed', error: string }

/**
 * Whether a database's current task is done, from what the hosts report: every instance at the task's generation
 * and available, every primary subscribed to every other node; for a delete, no instance left anywhere. Pure.
 * `reachable` are the hosts whose heartbeats are current: an unreachable host's instances are unknown, so a delete
 * that involves it waits.
 */
export function outcome (db: DesiredDatabase, cluster: readonly ObservedInstance[], reachable: ReadonlySet<string>): Outcome {
  const mine = cluster.filter(i => i.database_id === db.id)
  if (db.deleted) {
    const hosts = new Set((db.spec?.nodes ?? []).flatMap(n => n.host_ids))
    const waiting = [...hosts].some(h => !reachable.has(h))
    return mine.length === 0 && !waiting ? { status: 'completed' } : { status: 'running' }
  }
  const spec = db.spec
  if (spec === undefined) return { status: 'failed', error: 'the merged spec is not valid; update the database to fix it' }
  const byId = new Map(mine.map(i => [i.id, i]))
  // An instance the spec no longer places (a removed node or replica) must be gone first.
  const placed = new Set(spec.nodes.flatMap(n => n.host_ids.map(h => instanceId(db.id, n.name, h))))
  if (mine.some(i => !placed.has(i.id))) return { status: 'running' }
  const failed = mine.find(i => i.state === 'failed' && i.generation >= db.generation)
  if (failed !== undefined) return { status: 'failed', error: `instance ${failed.id}: ${failed.error ?? 'failed'}` }
  for (const node of spec.nodes) {
    const primary = nodePrimary(db.id, node.name, node.host_ids, db.primaries?.[node.name])
    for (const hostId of node.host_ids) {
      const id = instanceId(db.id, node.name, hostId)
      const instance = byId.get(id)
      if (instance === undefined || instance.state !== 'available' || instance.generation < db.generation) return { status: 'running' }
      if (id !== primary?.instanceId || spec.nodes.length < 2) continue
      const subscribed = new Set((instance.subscriptions ?? []).filter(s => s.status === 'replicating').map(s => s.provider_node))
      if (spec.nodes.some(other => other.name !== node.name && !subscribed.has(other.name))) return { status: 'running' }
    }
  }
  return { status: 'completed' }
}
