import { instanceId, nodePrimary, type ObservedInstance } from '@pgmesh/model'
import type { DesiredDatabase } from './types.js'

/**
 * Rolling restarts, decided by every host alone from the converged document and the instances the hosts report.
 *
 * A change that needs a running server restarted (a setting read only at start, a port, an image) is written to every
 * instance at once but restarted one instance at a time, in the database's roll order: node by node in the spec's
 * order; inside a node its replicas (in host order), its primary last. An instance's turn comes when every instance
 * before it has settled (at the database's generation, available, no restart pending, a primary replicating from every
 * other node that is serving) and every instance after it that is reported is up. A primary with replicas is not restarted in place:
 * in its turn the HA loop switches the node over to a replica, and the former primary is rebuilt as a replica with
 * the new spec.
 *
 * Why it is safe without a coordinator: the order is a function of the document, which every host converges to, and
 * an instance's progress is reported only by its own host. Two instances restart at once only if one host saw the
 * other settled, which its host reports only after the restart is done (the report carries the new generation and no
 * pending restart), or up when it was restarting, which a report made before the restart could claim for at most one
 * heartbeat; the instance after it in the order then still needs it settled. A host that is unreachable reports
 * nothing, so its instances are not settled, and the roll holds when it reaches them, until the host is back or removed.
 */

/** What the roll reads of a database (the planner's and the HA loop's records both have it). */
export type RollDatabase = Pick<DesiredDatabase, 'id' | 'generation' | 'spec' | 'primaries' | 'instanceOperations'>

export interface RollEntry {
  instanceId: string
  nodeName: string
  hostId: string
  primary: boolean
}

/** The database's instances in roll order. Instances the user stopped take no part (they start with the new spec). */
export function rollOrder (db: RollDatabase): RollEntry[] {
  const out: RollEntry[] = []
  for (const node of db.spec?.nodes ?? []) {
    const primary = nodePrimary(db.id, node.name, node.host_ids, db.primaries?.[node.name])
    const entries = node.host_ids
      .map(hostId => ({ instanceId: instanceId(db.id, node.name, hostId), nodeName: node.name, hostId, primary: false }))
      .filter(e => db.instanceOperations?.[e.instanceId]?.stopped !== true)
      .map(e => ({ ...e, primary: e.instanceId === primary?.instanceId }))
    out.push(...entries.filter(e => !e.primary), ...entries.filter(e => e.primary))
  }
  return out
}

/**
 * Through with the roll: at the generation, available, nothing pending; a primary also replicating from every other
 * node whose primary is reported available (`serving`): a node cut off from here cannot be replicated from, and is
 * no fault of this one.
 */
export function settled (db: RollDatabase, entry: RollEntry, observed: ObservedInstance | undefined, serving: ReadonlySet<string>): boolean {
  if (observed === undefined || observed.generation < db.generation || observed.state !== 'available' || observed.pending_restart === true) return false
  if (!entry.primary) return true
  const replicating = new Set((observed.subscriptions ?? []).filter(s => s.status === 'replicating').map(s => s.provider_node))
  return (db.spec?.nodes ?? []).every(n => n.name === entry.nodeName || !serving.has(n.name) || replicating.has(n.name))
}

/** Serving, whether or not it has its restart behind it. */
function up (db: RollDatabase, observed: ObservedInstance | undefined): boolean {
  if (observed === undefined) return false
  // A report older than the generation says `modifying` while the server still runs the previous spec.
  return observed.state === 'available' || (observed.state === 'modifying' && observed.generation < db.generation)
}

/** Why an instance cannot restart yet: the instance it waits for, and what that one lacks. */
export interface RollWait { instanceId: string, hostId: string, reason: 'not settled' | 'not up' | 'not reported' }

/**
 * Undefined when it is the instance's turn to restart; otherwise the first instance it waits for. An instance not
 * in the roll order (stopped by the user, not in the spec) never waits.
 */
export function rollWait (db: RollDatabase, id: string, cluster: readonly ObservedInstance[]): RollWait | undefined {
  const order = rollOrder(db)
  const at = order.findIndex(e => e.instanceId === id)
  if (at < 0) return undefined
  const byId = new Map(cluster.filter(i => i.database_id === db.id).map(i => [i.id, i]))
  const serving = new Set(order.filter(e => e.primary && byId.get(e.instanceId)?.state === 'available').map(e => e.nodeName))
  for (const [i, entry] of order.entries()) {
    if (i === at) continue
    const observed = byId.get(entry.instanceId)
    // An instance after this one that no host reports (its host cut off, or not created yet) may well be serving
    // where it is: it holds the roll only once its turn comes. One reported down does hold it: restarting now would
    // leave two nodes refusing writes.
    if (i > at && observed === undefined) continue
    const ok = i < at ? settled(db, entry, observed, serving) : up(db, observed)
    if (!ok) return { instanceId: entry.instanceId, hostId: entry.hostId, reason: observed === undefined ? 'not reported' : i < at ? 'not settled' : 'not up' }
  }
  return undefined
}

/**
 * How an instance's pending restart is carried out in its turn: a primary with another instance in the roll hands its
 * node over first (the HA loop); anything else restarts in place (the planner).
 */
export function rollsByHandOver (db: RollDatabase, id: string): boolean {
  const order = rollOrder(db)
  const entry = order.find(e => e.instanceId === id)
  return entry?.primary === true && order.some(e => e.nodeName === entry.nodeName && !e.primary)
}

/** A task log line saying what a waiting restart waits for. */
export function describeWait (id: string, wait: RollWait, reachable: (hostId: string) => boolean): string {
  const why = !reachable(wait.hostId)
    ? `host ${wait.hostId} is unreachable`
    : wait.reason === 'not settled'
      ? 'it has not finished its own restart (available at the new generation and replicating)'
      : wait.reason === 'not up' ? 'it is not available' : 'its host reports no such instance yet'
  return `instance ${id} waits for its turn in the rolling restart: ${wait.instanceId} comes first, and ${why}`
}
