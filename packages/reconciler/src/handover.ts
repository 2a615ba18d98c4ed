import type { DesiredDatabaseRecord } from '@pgmesh/cluster'
import type { NodePrimary, ObservedInstance, PrimaryChangeRequest } from '@pgmesh/model'
import type { Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import type { ReconcilerHost } from './deps.js'
import type { InstanceAdmin } from './instance-admin.js'

/** What a hand-over needs of the HA loop that decided it. It runs as a job on the primary's instance queue. */
export interface HandOverContext {
  host: Pick<ReconcilerHost, 'runtime' | 'document' | 'tasks' | 'operations'>
  admin: Pick<InstanceAdmin, 'setReadOnly' | 'drainToPeers' | 'waitReplayed'>
  /** Only ever called from inside a job of the instance's queue. */
  control: Pick<Orchestrator, 'stopInstance'>
  /** Published decision: the primary is fenced (kept stopped by the planner) from the moment it stops. */
  fence: (instanceId: string) => void
  /** Stops keeping the node's lease (the keeper goes; the lease itself is released separately). */
  drop: (key: string) => Promise<void>
  highestSeen: (key: string) => number
  taskLog: (taskId: string, message: string, fields?: Record<string, unknown>) => Promise<void>
  requeue: () => void
  logger: Logger
}

export interface HandOver {
  db: DesiredDatabaseRecord
  nodeName: string
  /** The node's lease key, `<db>/<node>`. */
  key: string
  /** This host's instance, the node's primary. */
  mine: string
  primary: NodePrimary
  request: PrimaryChangeRequest
  cluster: ObservedInstance[]
  /**
   * switchover: a switchover task (settled here on failure); stop: the user stopping the primary (it stops even if the
   * hand-over fails); roll: its turn in a rolling restart (on failure it takes writes again and the roll retries).
   */
  purpose: 'switchover' | 'stop' | 'roll'
}

/**
 * Planned: writes stop here, the other nodes confirm everything this node wrote, the candidate replays all of it,
 * the server stops, then the lease goes to the candidate at a higher term and the document says so. On any failure
 * before the server stops, this primary takes writes again.
 */
export async function handOver (ctx: HandOverContext, h: HandOver): Promise<void> {
  const { db, nodeName, key, mine, primary, request, cluster, purpose } = h
  const log = async (message: string): Promise<void> => { await ctx.taskLog(request.task_id, message, { node_name: nodeName }) }
  const leases = ctx.host.runtime.leases
  const candidate = cluster.find(i => i.id === request.candidate)
  const databaseName = db.spec?.database_name
  let handedOver = false
  /** The server was stopped for the hand-over: a failure from here on leaves it fenced until a pass un-fences it. */
  let stopped = false
  try {
    if (leases === undefined || databaseName === undefined) throw new Error('not ready')
    if (candidate?.port === undefined || candidate.role !== 'replica' || candidate.state !== 'available') throw new Error(`candidate instance ${request.candidate} is not an available replica`)
    const address = candidate.addresses?.[0] ?? ctx.host.document.doc.hosts?.[candidate.host_id]?.client_addresses[0]
    if (address === undefined) throw new Error(`no address for host ${candidate.host_id}`)
    if (purpose === 'switchover') await ctx.host.tasks.settle(request.task_id, { status: 'running' })
    await log(`switching node ${nodeName} over from ${mine} to ${request.candidate}: stopping writes`)
    await ctx.admin.setReadOnly(mine, true)
    const lsn = await ctx.admin.drainToPeers(mine, databaseName, 30_000)
    await log(`the other nodes have everything up to ${lsn}`)
    // The candidate replays it while this server still runs: a replica that was just cloned, or lost its stream, is
    // streaming again before the only server it can get the WAL from stops.
    await ctx.admin.waitReplayed({ host: address, port: candidate.port }, lsn, 30_000)
    await log(`${request.candidate} replayed everything; stopping ${mine}`)
    ctx.fence(mine)
    stopped = true
    // The lease is renewed until the hand-over, however long the server takes to stop (a Swarm task takes
    // seconds): a lease that ran out meanwhile would let the candidate take over by itself and end this wait.
    await ctx.control.stopInstance(mine)
    await log(`${mine} stopped; handing the lease over`)
    await ctx.drop(key)
    await leases.release(key, mine, primary.term)
    let term = Math.max(primary.term, ctx.highestSeen(key)) + 1
    const deadline = Date.now() + 15_000
    for (;;) {
      const outcome = await leases.request(key, request.candidate, term)
      if (outcome.held) break
      if (Date.now() > deadline) throw new Error(`no majority granted the lease to ${request.candidate} (${outcome.granted}/${outcome.voters})`)
      term = Math.max(term, outcome.highestTerm) + 1
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    handedOver = true
    await ctx.host.operations.recordPrimary(db.id, nodeName, term, request.candidate)
    await log(`${request.candidate} is the primary of node ${nodeName} at term ${term}`)
    ctx.requeue()
  } catch (err) {
    const message = (err as Error).message
    ctx.logger.warn({ node: key, err: message }, 'switchover failed')
    await log(`switchover failed: ${message}`).catch(() => {})
    if (purpose === 'stop') {
      // The user asked for the server to stop: it stops, and the lease goes once it is down.
      if (!handedOver) await stopAndRelease(ctx, key, mine, primary.term)
      return
    }
    if (purpose === 'switchover') await ctx.host.tasks.settle(request.task_id, { status: 'failed', error: message }).catch(() => {})
    if (!handedOver && !stopped) {
      // Still the primary, still renewing its lease: take writes again.
      await ctx.admin.setReadOnly(mine, false).catch(() => {})
    }
    // Otherwise it stays fenced (stopped, read-only) until a pass holds the lease (still, or again) and un-fences it.
    ctx.requeue()
  }
}

/** The user stops a primary with no replica to take over: fenced, stopped, and the lease goes once it is down. */
export async function stopAndRelease (ctx: HandOverContext, key: string, mine: string, term: number, readOnlyFirst = false): Promise<void> {
  ctx.fence(mine)
  if (readOnlyFirst) await ctx.admin.setReadOnly(mine, true).catch(() => {})
  if (readOnlyFirst) await ctx.control.stopInstance(mine)
  else await ctx.control.stopInstance(mine).catch(() => {})
  await ctx.drop(key)
  await ctx.host.runtime.leases?.release(key, mine, term)
}
