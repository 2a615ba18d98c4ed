import type { NodeSpec } from '@pgmesh/model'
import {
  type ConnectPeer, execute, type JoinSql, type Membership, type PeerConnection, type Queryable, type ReplicationDriver, type ReplicationSql
} from './driver.js'
import { RELEASE_EMPTY_SCHEMA } from './ddl-capture.js'
import { BARRIER_MESSAGE, CURRENT_WAL_LSN, dropSlot, pglogicalSlots, slotConfirmed, terminateSlotUsers } from './slots.js'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/**
 * Waits until a logical slot on this server has confirmed everything written here up to now. An idle subscriber
 * confirms only when something is decoded, so each poll writes a small WAL message to move it along.
 */
export async function waitConfirmed (conn: Queryable, slot: string, what: string, timeoutMs = 120_000): Promise<void> {
  const [now] = await execute<{ lsn: string }>(conn, CURRENT_WAL_LSN)
  const target = now?.lsn as string
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [row] = await execute<{ done: boolean | null, active: boolean }>(conn, slotConfirmed(slot, target))
    if (row?.done === true) return
    if (Date.now() > deadline) throw new Error(`${what}: slot ${slot} has not confirmed ${target} (active: ${String(row?.active)})`)
    await execute(conn, BARRIER_MESSAGE)
    await sleep(200)
  }
}

/** Drops a slot on this server, ending the walsender that holds it first. */
export async function dropSlotNow (conn: Queryable, slot: string): Promise<void> {
  await execute(conn, terminateSlotUsers([slot]))
  for (let attempt = 0; ; attempt++) {
    try {
      await execute(conn, dropSlot(slot))
      return
    } catch (err) {
      // The walsender takes a moment to exit after being terminated.
      if (attempt >= 20) throw err
      await sleep(100)
    }
  }
}

/**
 * On a provider: the pglogical slots of subscriptions whose subscriber is no longer a node of the database
 * (`…sub_<provider>_<subscriber>` and the `_init` one of a join), left when a removal raced the subscriber's exit.
 */
export async function dropStaleSlots (conn: Queryable, nodes: readonly string[]): Promise<void> {
  for (const row of await execute<{ slot_name: string }>(conn, pglogicalSlots())) {
    const subscriber = /sub_[a-z0-9]+_([a-z0-9]+)(?:_init)?$/.exec(row.slot_name)?.[1]
    if (subscriber !== undefined && !nodes.includes(subscriber)) await dropSlotNow(conn, row.slot_name)
  }
}

/** pgmesh pauses subscriptions only while a node joins: a join cut short by a crash must not leave them paused. */
async function resumePaused (conn: Queryable, driver: ReplicationDriver, sql: ReplicationSql): Promise<void> {
  if (sql.join === undefined) return
  for (const sub of await driver.subscriptionStatus(conn)) {
    if (sub.status === 'disabled') await execute(conn, sql.enableSubscription(sub.name))
  }
}

async function waitReplicating (driver: ReplicationDriver, conn: Queryable, name: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const status = (await driver.subscriptionStatus(conn)).find(s => s.name === name)
    if (status?.status === 'replicating') return
    if (Date.now() > deadline) throw new Error(`subscription ${name} is not replicating (${status?.status ?? 'missing'})`)
    await sleep(200)
  }
}

async function withPeer<T> (connect: ConnectPeer, dsn: string, work: (peer: PeerConnection) => Promise<T>): Promise<T> {
  const peer = await connect(dsn)
  try {
    return await work(peer)
  } finally {
    await peer.end().catch(() => {})
  }
}

/** The provider-side slot name of a subscription of this node. */
async function slotOf (conn: Queryable, join: JoinSql, subscription: string): Promise<string> {
  const [row] = await execute<{ slot: string }>(conn, join.subscriptionSlot(subscription))
  if (row?.slot === undefined) throw new Error(`no subscription ${subscription}`)
  return row.slot
}

async function waitSlotExists (conn: Queryable, join: JoinSql, slot: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await execute(conn, join.slotReady(slot))).length !== 1) {
    if (Date.now() > deadline) throw new Error(`slot ${slot} was not created`)
    await sleep(100)
  }
}

/**
 * Brings a node's primary to its membership: the node exists (at its DSN), nodes gone from the database lose their
 * subscriptions and slots here, and it subscribes to every provider — a new node through the join protocol.
 */
export async function ensureMembership (
  conn: Queryable, driver: ReplicationDriver, sql: ReplicationSql, membership: Membership, connect: ConnectPeer, progress: (message: string) => Promise<void>
): Promise<void> {
  const me = membership.node.nodeName
  await driver.ensureNode(conn, membership.node)
  // Nodes gone from the spec: their subscriptions here and the slots they used here go.
  const existing = await driver.subscriptionStatus(conn)
  for (const removed of new Set(existing.map(s => s.provider_node).filter(n => !membership.nodes.includes(n)))) {
    await driver.dropSubscription(conn, { provider: removed, subscriber: me })
    await driver.dropSlotsFor(conn, removed)
  }
  await dropStaleSlots(conn, membership.nodes)
  const source = membership.sourceNode === undefined ? undefined : membership.providers.find(p => p.nodeName === membership.sourceNode)
  if (source === undefined) {
    await driver.ensureTablesReplicated(conn)
    for (const p of membership.providers) await driver.ensureSubscription(conn, { provider: p.nodeName, subscriber: me, providerDsn: p.dsn })
    await resumePaused(conn, driver, sql)
    return
  }
  await joinFromSource(conn, driver, sql, membership, source, connect, progress)
}

/**
 * A node joining a live database, with no row lost while the others keep writing. The node first subscribes to its
 * source with a copy of schema and rows and with origin forwarding on (`sub_<S>_<N>_init`), so whatever the source
 * applies from the other nodes reaches it too. Then it subscribes to every other node directly and to the source
 * without forwarding. A barrier waits until the source has applied each other node's changes up to a point after
 * the direct subscriptions began, and until that has reached the new node; only then does the forwarding
 * subscription go. Rows that arrive twice resolve by last-update-wins. pglogical only (a driver without `join`
 * SQL subscribes directly, the source last with a copy): Spock's own add-node procedure (sync events, slot and
 * origin advance) is the way there.
 */
async function joinFromSource (
  conn: Queryable, driver: ReplicationDriver, sql: ReplicationSql, membership: Membership, source: NodeSpec, connect: ConnectPeer,
  progress: (message: string) => Promise<void>
): Promise<void> {
  const me = membership.node.nodeName
  const subscribed = new Set((await driver.subscriptionStatus(conn)).map(s => s.name))
  const initName = `sub_${source.nodeName}_${me}_init`
  const directName = `sub_${source.nodeName}_${me}`
  const others = membership.providers.filter(p => p !== source)
  const join = sql.join
  if (join === undefined || (subscribed.has(directName) && !subscribed.has(initName))) {
    for (const p of others) await driver.ensureSubscription(conn, { provider: p.nodeName, subscriber: me, providerDsn: p.dsn })
    if (!subscribed.has(directName)) await execute(conn, RELEASE_EMPTY_SCHEMA)
    await driver.ensureSubscription(conn, { provider: source.nodeName, subscriber: me, providerDsn: source.dsn, synchronizeStructure: !subscribed.has(directName), synchronizeData: !subscribed.has(directName) })
    await driver.ensureTablesReplicated(conn)
    await resumePaused(conn, driver, sql)
    return
  }
  // The forwarding subscription uses replication sets of its own on the source: pglogical allows one
  // subscription per provider and set, and the direct one needs the standard sets.
  const joinSet = `pgmesh_join_${me}`
  await withPeer(connect, source.dsn, async (s) => { for (const statement of join.createJoinSets(joinSet)) await execute(s, statement) })
  await progress(`copying schema and rows from ${source.nodeName}, with forwarding`)
  if (!subscribed.has(initName)) {
    // The schema copy brings the source's pgmesh_repl; the empty one made with this database would collide.
    await execute(conn, RELEASE_EMPTY_SCHEMA)
    await execute(conn, join.subscribeForwarding(initName, source.dsn, joinSet))
  }
  await waitReplicating(driver, conn, initName)
  // 'replicating' only says the worker runs; the schema and row copy is done when pglogical says so.
  await execute(conn, join.waitSyncComplete(initName))
  await progress(`copy from ${source.nodeName} done; subscribing to ${others.map(p => p.nodeName).concat(source.nodeName).join(', ')} directly`)
  // The direct subscriptions are created, their slots start holding every change from now on, and they are
  // paused at once: two workers applying the same rows at the same time collide on unique keys, so the direct ones
  // only run after the forwarding one is gone (the rows they then repeat resolve by last-update-wins).
  const direct = [...others, source]
  for (const p of direct) {
    const name = `sub_${p.nodeName}_${me}`
    await driver.ensureSubscription(conn, { provider: p.nodeName, subscriber: me, providerDsn: p.dsn })
    const slot = await slotOf(conn, join, name)
    await withPeer(connect, p.dsn, async peer => { await waitSlotExists(peer, join, slot) })
    await execute(conn, sql.disableSubscription(name))
  }
  await progress('waiting until every change written before the direct subscriptions has arrived')
  await withPeer(connect, source.dsn, async (sourceConn) => {
    for (const p of others) {
      // The source has applied everything p wrote before now (p's slot for the source confirms it)...
      const [slot] = await execute<{ slot: string }>(sourceConn, join.subscriptionSlot(`sub_${p.nodeName}_${source.nodeName}`))
      if (slot?.slot === undefined) throw new Error(`node ${source.nodeName} has no subscription to ${p.nodeName} yet`)
      await withPeer(connect, p.dsn, async peer => { await waitConfirmed(peer, slot.slot, `${source.nodeName} catching up with ${p.nodeName}`) })
    }
    // ...and this node has received everything the source had by then, forwarded changes included.
    const initSlot = await slotOf(conn, join, initName)
    await waitConfirmed(sourceConn, initSlot, `${me} catching up with ${source.nodeName}`)
    await progress('caught up; dropping the forwarding subscription')
    await execute(conn, join.dropSubscriptionNamed(initName))
    await execute(sourceConn, join.dropJoinSets(joinSet))
    await dropSlotNow(sourceConn, initSlot)
  })
  for (const p of direct) {
    const name = `sub_${p.nodeName}_${me}`
    await execute(conn, sql.enableSubscription(name))
    await waitReplicating(driver, conn, name)
  }
  await driver.ensureTablesReplicated(conn)
}
