import { type NodeSpec, rfc3339 } from '@pgmesh/model'
import {
  type ConnectPeer, execute, type Link, type Membership, type Queryable, type ReplicationDriver, type ReplicationKind, type ReplicationSql,
  type SubscriberLag, type SubscriptionSpec, type SubscriptionStatus, type UnreplicatedDdl
} from './driver.js'
import { ensureMembership } from './membership.js'
import { pglogicalSql } from './pglogical.js'
import { dropInactiveSlots, terminateSlotUsers } from './slots.js'
import { spockSql } from './spock.js'

const SLOT_DROP_ATTEMPTS = 50
const SLOT_DROP_PAUSE_MS = 100
/** The extension's manager worker wakes on a subscription change and acts within milliseconds. */
const MANAGER_SETTLE_MS = 300

/** Runs a driver's generated SQL in order; all the extension specifics live in the ReplicationSql. */
class SqlReplicationDriver implements ReplicationDriver {
  constructor (readonly kind: ReplicationKind, private readonly sql: ReplicationSql) {}

  async ensureNode (conn: Queryable, node: NodeSpec): Promise<void> {
    for (const statement of this.sql.ensureNode(node)) await execute(conn, statement)
    const [local] = await execute<{ node_name: string }>(conn, this.sql.localNodeName())
    if (local?.node_name !== node.nodeName) {
      throw new Error(`this database is ${kindNode(this.kind, local?.node_name)}, not node '${node.nodeName}'`)
    }
  }

  async ensureTablesReplicated (conn: Queryable): Promise<void> {
    for (const statement of this.sql.ensureTablesReplicated()) await execute(conn, statement)
  }

  async ensureSubscription (conn: Queryable, subscription: SubscriptionSpec): Promise<void> {
    for (const statement of this.sql.ensureSubscription(subscription)) await execute(conn, statement)
  }

  async dropSubscription (conn: Queryable, link: Link): Promise<void> {
    for (const statement of this.sql.dropSubscription(link)) await execute(conn, statement)
  }

  async dropSlotsFor (conn: Queryable, subscriberNode: string): Promise<string[]> {
    const slots = (await execute<{ slot_name: string }>(conn, this.sql.slotsFor(subscriberNode))).map(r => r.slot_name)
    const dropped: string[] = []
    // A terminated walsender takes a moment to release its slot, and a live subscriber may reconnect meanwhile.
    for (let attempt = 0; attempt < SLOT_DROP_ATTEMPTS && dropped.length < slots.length; attempt++) {
      const remaining = slots.filter(s => !dropped.includes(s))
      await execute(conn, terminateSlotUsers(remaining))
      try {
        dropped.push(...(await execute<{ slot_name: string }>(conn, dropInactiveSlots(remaining))).map(r => r.slot_name))
      } catch (err) {
        // "replication slot … is active": it got picked up again between the check and the drop; try again.
        if ((err as { code?: string }).code !== '55006') throw err
      }
      if (dropped.length < slots.length) await new Promise(resolve => setTimeout(resolve, SLOT_DROP_PAUSE_MS))
    }
    if (dropped.length < slots.length) {
      throw new Error(`slots still in use after ${SLOT_DROP_ATTEMPTS} attempts: ${slots.filter(s => !dropped.includes(s)).join(', ')}`)
    }
    return dropped
  }

  async replicateDdl (conn: Queryable, command: string): Promise<void> {
    await execute(conn, this.sql.replicateDdl(command))
  }

  async subscriptionStatus (conn: Queryable): Promise<SubscriptionStatus[]> {
    return await execute<SubscriptionStatus>(conn, this.sql.subscriptionStatus())
  }

  async subscriberLag (conn: Queryable): Promise<SubscriberLag[]> {
    const rows = await execute<{ subscriber_node: string, lag_bytes: string }>(conn, this.sql.subscriberLag())
    return rows.map(r => ({ subscriber_node: r.subscriber_node, lag_bytes: Math.max(0, Number(r.lag_bytes)) }))
  }

  async restartSubscription (conn: Queryable, name: string): Promise<void> {
    await execute(conn, this.sql.disableSubscription(name))
    // The manager must see the subscription disabled (and drop its crashed worker slot) before it is enabled again.
    await new Promise(resolve => setTimeout(resolve, MANAGER_SETTLE_MS))
    await execute(conn, this.sql.enableSubscription(name))
  }

  async unreplicatedDdl (conn: Queryable): Promise<UnreplicatedDdl | undefined> {
    const statement = this.sql.unreplicatedDdl?.()
    if (statement === undefined) return undefined
    const [row] = await execute<{ count: number, logged_at: Date, role: string, statement: string, reason: string }>(conn, statement)
    if (row === undefined) return undefined
    return { count: row.count, last: { logged_at: rfc3339(row.logged_at), role: row.role, statement: row.statement, reason: row.reason } }
  }

  async ensureMembership (conn: Queryable, membership: Membership, connect: ConnectPeer, progress: (message: string) => Promise<void>): Promise<void> {
    await ensureMembership(conn, this, this.sql, membership, connect, progress)
  }

  async ensureProviderSlots (conn: Queryable, nodeName: string, peers: readonly string[]): Promise<void> {
    const { localNodeExists, providerSlot } = this.sql
    if (localNodeExists === undefined || providerSlot === undefined) return
    for (const check of localNodeExists()) {
      if ((await execute(conn, check)).length !== 1) return
    }
    for (const peer of peers) await execute(conn, providerSlot(nodeName, peer))
  }

  async applyWorkers (conn: Queryable): Promise<Map<string, string>> {
    const rows = await execute<{ name: string, backend_type: string }>(conn, this.sql.applyWorkers())
    return new Map(rows.map(r => [r.backend_type, r.name]))
  }
}

function kindNode (kind: ReplicationKind, nodeName: string | undefined): string {
  return nodeName === undefined ? `not a ${kind} node` : `${kind} node '${nodeName}'`
}

export const pglogicalDriver: ReplicationDriver = new SqlReplicationDriver('pglogical', pglogicalSql)
export const spockDriver: ReplicationDriver = new SqlReplicationDriver('spock', spockSql)

export function driverFor (kind: ReplicationKind): ReplicationDriver {
  return kind === 'spock' ? spockDriver : pglogicalDriver
}

/**
 * Which extension this instance replicates with: Spock when it is available (pgEdge's packages ship it),
 * otherwise pglogical. Fails when neither is installed.
 */
export async function detect (conn: Queryable): Promise<ReplicationKind> {
  const rows = await execute<{ name: string }>(conn, {
    text: "SELECT name FROM pg_catalog.pg_available_extensions WHERE name IN ('spock', 'pglogical')",
    values: []
  })
  const names = rows.map(r => r.name)
  if (names.includes('spock')) return 'spock'
  if (names.includes('pglogical')) return 'pglogical'
  throw new Error('neither spock nor pglogical is available on this instance')
}
