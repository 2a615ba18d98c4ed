import type { Orchestrator } from '@pgmesh/orchestrator'
import type { Logger } from 'pino'
import type { AppliedStore } from './applied-store.js'
import type { Failures } from './failures.js'
import type { InstanceAdmin } from './instance-admin.js'
import type { Action } from './types.js'

export interface ActionExecutorDeps {
  orchestrator: Pick<Orchestrator, 'ensureInstance' | 'stopInstance' | 'restartInstance' | 'promote' | 'removeInstance' | 'status'>
  applied: () => AppliedStore
  admin: InstanceAdmin
  failures: Pick<Failures, 'clear'>
  /** Whether the orchestrator lists the instance (as of the pass). */
  exists: (instanceId: string) => boolean
  /** What was known of a removed, rebuilt or promoted instance's replication goes. */
  forgetReplication: (instanceId: string) => void
  /** A rebuilt former primary is a plain replica again: the HA loop forgets it was fenced. */
  forgetPrimary: (instanceId: string) => void
  logger: Logger
}

/** Where an action's progress is logged: its database's current task, or the operation's task. */
export interface ActionTasks {
  log: (message: string, fields?: Record<string, unknown>) => Promise<void>
  logOperation: (message: string, fields?: Record<string, unknown>) => Promise<void>
}

/**
 * Carries out one planned action through the orchestrator, the replication driver and the instance admin, and writes
 * the applied record after it. Throws when it fails; the loop records the failure and decides when to retry.
 */
export class ActionExecutor {
  constructor (private readonly deps: ActionExecutorDeps) {}

  async apply (action: Action, tasks: ActionTasks): Promise<void> {
    const { orchestrator, failures } = this.deps
    const applied = this.deps.applied()
    const started = Date.now()
    const tookMs = (): number => Date.now() - started
    switch (action.kind) {
      case 'ensure-instance': {
        const exists = this.deps.exists(action.instanceId)
        await tasks.log(`${exists ? 'updating' : 'creating'} instance ${action.instanceId}`, { instance_id: action.instanceId, node_name: action.nodeName })
        const status = await orchestrator.ensureInstance(action.spec)
        const previous = applied.get(action.instanceId)
        const replicationHash = previous?.specHash === action.specHash ? previous.replicationHash : undefined
        await applied.set({
          instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash,
          role: previous?.role ?? (action.spec.primary === undefined ? 'primary' : 'replica'),
          ...(previous?.restarts === undefined ? {} : { restarts: previous.restarts }),
          ...(replicationHash === undefined ? {} : { replicationHash })
        })
        failures.clear(action.instanceId)
        if (status.pendingRestart === true) {
          await tasks.log(`instance ${action.instanceId} is updated; what needs a restart waits for its turn in the rolling restart (took ${tookMs()} ms)`, { instance_id: action.instanceId, duration_ms: tookMs() })
          return
        }
        // Planned again with the spec and generation already applied: only its pending restart was left.
        const turn = previous?.specHash === action.specHash && previous.generation === action.generation
        await tasks.log(`instance ${action.instanceId} is ${turn ? 'restarted in its turn of the rolling restart' : 'available'} (took ${tookMs()} ms)`, { instance_id: action.instanceId, duration_ms: tookMs() })
        return
      }
      case 'ensure-replication': {
        await tasks.log(`configuring replication of node ${action.nodeName}`, { providers: action.providers.map(p => p.nodeName) })
        const { admin } = this.deps
        await admin.withSession(action.instanceId, action.databaseName, async (conn) => {
          const membership = { node: action.node, providers: action.providers, nodes: action.nodes, ...(action.sourceNode === undefined ? {} : { sourceNode: action.sourceNode }) }
          await (await admin.replicationOf(conn)).driver.ensureMembership(conn, membership, admin.connectPeer, async (message) => { await tasks.log(message, { node_name: action.nodeName }) })
        })
        const previous = applied.get(action.instanceId)
        if (previous !== undefined) await applied.set({ ...previous, replicationHash: action.hash })
        failures.clear(action.instanceId)
        await tasks.log(`node ${action.nodeName} subscribes to ${action.providers.map(p => p.nodeName).join(', ') || 'no other node yet'} (took ${tookMs()} ms)`)
        return
      }
      case 'stop-instance': {
        await tasks.logOperation(`stopping instance ${action.instanceId}`, { instance_id: action.instanceId })
        await orchestrator.stopInstance(action.instanceId)
        return
      }
      case 'restart-instance': {
        await tasks.logOperation(`restarting instance ${action.instanceId}`, { instance_id: action.instanceId })
        await orchestrator.restartInstance(action.instanceId)
        const previous = applied.get(action.instanceId)
        if (previous !== undefined) await applied.set({ ...previous, restarts: action.restarts })
        await tasks.logOperation(`instance ${action.instanceId} restarted (took ${tookMs()} ms)`, { instance_id: action.instanceId, duration_ms: tookMs() })
        return
      }
      case 'promote-instance': {
        const steps = await this.promote(action)
        const previous = applied.get(action.instanceId)
        if (previous !== undefined) {
          const { replicationHash: _dropped, ...rest } = previous
          await applied.set({ ...rest, role: 'primary' })
        }
        // What it reported as this node's primary before (a switchover back) is not what it has now.
        this.deps.forgetReplication(action.instanceId)
        failures.clear(action.instanceId)
        this.deps.logger.info({ instanceId: action.instanceId, ms: tookMs(), ...steps }, 'promoted to primary')
        return
      }
      case 'rebuild-instance': {
        this.deps.logger.warn({ instanceId: action.instanceId }, 'former primary: discarding its data and cloning the new primary')
        // Clients' connection strings keep working: the rebuilt replica keeps the port the spec left to the host.
        const port = action.spec.port !== 0 ? action.spec.port : (await orchestrator.status(action.instanceId).catch(() => undefined))?.port ?? 0
        await orchestrator.removeInstance(action.instanceId)
        await applied.delete(action.instanceId)
        this.deps.forgetReplication(action.instanceId)
        this.deps.forgetPrimary(action.instanceId)
        await orchestrator.ensureInstance({ ...action.spec, port })
        await applied.set({ instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash, role: 'replica' })
        failures.clear(action.instanceId)
        return
      }
      case 'remove-instance': {
        await tasks.log(`removing instance ${action.instanceId}`, { instance_id: action.instanceId })
        await orchestrator.removeInstance(action.instanceId)
        await applied.delete(action.instanceId)
        this.deps.forgetReplication(action.instanceId)
        failures.clear(action.instanceId)
        await tasks.log(`removed instance ${action.instanceId} (took ${tookMs()} ms)`)
      }
    }
  }

  /**
   * Promotes a replica that holds its node's lease. It stays read-only until the slots exist that the node's other
   * instances (physical) and the other nodes' subscriptions (logical, same names as on the old primary) need, so
   * no write happens that a follower's slot would miss.
   */
  private async promote (action: Extract<Action, { kind: 'promote-instance' }>): Promise<{ promoteMs: number, slotsMs: number }> {
    const { admin, orchestrator } = this.deps
    await admin.setReadOnly(action.instanceId, true)
    const started = performance.now()
    await orchestrator.promote(action.instanceId)
    const promoted = performance.now()
    await admin.createPromotedSlots(action.instanceId, action.databaseName, action.nodeName, action.replicaSlots, action.peers)
    const slotted = performance.now()
    await admin.setReadOnly(action.instanceId, false)
    // Where a failover's seconds go (scripts/bench/failover-vs-patroni.ts reads these).
    return { promoteMs: Math.round(promoted - started), slotsMs: Math.round(slotted - promoted) }
  }
}
