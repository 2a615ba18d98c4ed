import { join } from 'node:path'
import { nodePrimary, type NodeSpec, type ObservedInstance, type ObservedSubscription, rfc3339 } from '@pgmesh/model'
import { CONTROL_SESSION_OPTIONS, type InstanceStatus, type Orchestrator, parseInstanceId } from '@pgmesh/orchestrator'
import { applyErrors, detect, driverFor, JsonLogTail, type ReplicationDriver, type UnreplicatedDdl } from '@pgmesh/replication'
import pg from 'pg'
import type { Logger } from 'pino'
import { AppliedStore } from './applied-store.js'
import type { ReconcilerHost } from './deps.js'
import { HighAvailability } from './ha.js'
import { waitConfirmed } from './slots.js'
import { outcome } from './outcome.js'
import { plan } from './plan.js'
import { SubscriptionHealth } from './subscription-health.js'
import type { Action, Desired, DesiredDatabase, LocalInstance } from './types.js'

const FAILED_AFTER = 3

export interface ReconcilerOptions {
  logger: Logger
  /** Periodic resync, catching whatever events were missed. */
  resyncMs?: number
  /** How often primaries' subscription status is read. */
  subscriptionPollMs?: number
}

/**
 * The reconcile loop of one host: any event (document change, heartbeat, instance exit, timer) only asks for a pass;
 * one pass at a time plans from the converged document and what is observed, applies the actions, then settles the
 * tasks this host started.
 */
export class Reconciler {
  private applied!: AppliedStore
  private local = new Map<string, InstanceStatus>()
  private readonly subscriptions = new Map<string, { status: ObservedSubscription[], kind: string }>()
  /** The last error of each instance's actions, and how many times in a row they failed. */
  private readonly errors = new Map<string, { message: string, attempts: number }>()
  /** Per local primary: its subscriptions' errors, failures and restarts, and where its JSON server log was read up to. */
  private readonly subscriptionHealth = new Map<string, SubscriptionHealth>()
  private readonly serverLogs = new Map<string, JsonLogTail>()
  /** Per local primary: the DDL its automatic DDL replication refused (see @pgmesh/replication). */
  private readonly unreplicatedDdl = new Map<string, UnreplicatedDdl>()
  private polling = false
  /** What each instance's report last said, and since when. */
  private reportedSince = new Map<string, { fingerprint: string, since: string }>()
  /**
   * Actions that failed (say, with the Docker daemon down) are not retried before this time, so a host that cannot
   * reach its runtime does not retry on every pass (a peer's heartbeat asks for one every second, per peer): the
   * pause doubles from 0.5 s up to 5 s for work that brings an instance up, and from 1 s up to 30 s for removals
   * and stops.
   */
  private readonly backoff = new Map<string, { until: number, failures: number }>()
  private running: Promise<void> | undefined
  private again = false
  private stopped = false
  private timers: NodeJS.Timeout[] = []
  private readonly log: Logger
  private unsubscribe: (() => void) | undefined
  private readonly ha: HighAvailability

  constructor (private readonly host: ReconcilerHost, private readonly orchestrator: Orchestrator, private readonly options: ReconcilerOptions) {
    this.log = options.logger
    this.ha = new HighAvailability(host, orchestrator, {
      logger: options.logger.child({ component: 'ha' }),
      requeue: () => { this.requeue() },
      localStatus: id => this.local.get(id),
      connect: async (id, database) => await this.connect(id, database),
      taskLog: async (taskId, message, fields) => { await this.taskLog(taskId, message, fields) }
    })
  }

  async start (): Promise<void> {
    this.applied = await AppliedStore.open(join(this.host.dataDir, 'reconciler', 'applied.json'))
    await this.refreshLocal()
    const kick = (): void => { this.requeue() }
    this.host.document.on('change', kick)
    this.host.runtime.on('initialized', kick)
    // A peer's heartbeat may carry what a pass waits for (its instance up, its node ready).
    this.host.runtime.on('heartbeat', kick)
    this.unsubscribe = this.orchestrator.onEvent(kick)
    this.timers.push(setInterval(kick, this.options.resyncMs ?? 5000))
    this.timers.push(setInterval(() => { void this.pollSubscriptions() }, this.options.subscriptionPollMs ?? 1000))
    for (const t of this.timers) t.unref()
    this.ha.start()
    this.requeue()
  }

  async stop (): Promise<void> {
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    await this.ha.stop()
    this.unsubscribe?.()
    await this.running
  }

  /** Level-triggered: a pass already running is simply run once more after it. */
  requeue (): void {
    if (this.stopped) return
    if (this.running !== undefined) {
      this.again = true
      return
    }
    this.running = this.pass().catch((err: unknown) => { this.log.error({ err }, 'reconcile pass failed') }).finally(() => {
      this.running = undefined
      if (this.again && !this.stopped) {
        this.again = false
        this.requeue()
      }
    })
  }

  /** Waits for the passes in flight (tests). */
  async idle (): Promise<void> {
    while (this.running !== undefined) await this.running
  }

  private async pass (): Promise<void> {
    if (!this.host.runtime.initialized) return
    const desired = this.desired()
    await this.refreshLocal()
    const actions = plan(desired, {
      local: [...this.local.values()].map(toLocal),
      applied: this.applied.all(),
      cluster: this.host.health.clusterInstances(),
      leases: this.ha.held(),
      fenced: [...this.ha.fenced],
      synchronous: Object.fromEntries(this.ha.synchronous),
      now: Date.now()
    })
    this.forgetSettledErrors(actions)
    const now = Date.now()
    for (const action of actions) {
      if (this.stopped) return
      if ((this.backoff.get(`${action.kind}:${action.instanceId}`)?.until ?? 0) > now) continue
      // Planned before the HA loop fenced the instance (a lost lease, or a switchover stopping it meanwhile): it would
      // start the stopped primary again. The next pass plans from the fenced state.
      if ((action.kind === 'ensure-instance' || action.kind === 'restart-instance') && this.ha.fenced.has(action.instanceId)) continue
      await this.apply(action, desired)
    }
    if (actions.length > 0) {
      await this.refreshLocal()
      this.host.runtime.beat()
    }
    await this.settleTasks(desired)
  }

  /**
   * An instance whose actions failed (its runtime was down, say) and that runs again with nothing left to do for it
   * has recovered without a successful action of ours (Swarm restarted its container): its failure is history, and
   * keeping it would report the instance `failed` for good. Level-triggered like the rest: decided from the plan.
   */
  private forgetSettledErrors (actions: readonly Action[]): void {
    if (this.errors.size === 0) return
    const pending = new Set(actions.map(a => a.instanceId))
    for (const id of this.errors.keys()) {
      if (!pending.has(id) && this.local.get(id)?.state === 'running') this.errors.delete(id)
    }
  }

  private desired (): Desired & { records: Map<string, { taskId: string }> } {
    const hosts = Object.values(this.host.document.doc.hosts ?? {}).map(h => ({ id: h.id, addresses: [...h.client_addresses] }))
    const records = new Map<string, { taskId: string }>()
    const databases: DesiredDatabase[] = this.host.databases.desired().map((d) => {
      records.set(d.id, { taskId: d.task_id })
      const status = this.host.tasks.get(d.task_id)?.status
      return {
        id: d.id, generation: d.generation, deleted: d.deleted, paused: status === 'canceling' || status === 'canceled', spec: d.spec, sources: d.sources,
        primaries: d.primaries, instanceOperations: d.instanceOperations, primaryChanges: d.primaryChanges
      }
    })
    return { hostId: this.host.hostId, hosts, databases, records }
  }

  private async refreshLocal (): Promise<void> {
    this.local = new Map((await this.orchestrator.list()).map(s => [s.instanceId, s]))
  }

  private taskOf (desired: ReturnType<Reconciler['desired']>, databaseId: string | undefined): string | undefined {
    return databaseId === undefined ? undefined : desired.records.get(databaseId)?.taskId
  }

  private async taskLog (taskId: string | undefined, message: string, fields?: Record<string, unknown>): Promise<void> {
    if (taskId === undefined) return
    await this.host.tasks.log(taskId, message, { host_id: this.host.hostId, ...fields }).catch(() => {})
  }

  private async apply (action: Action, desired: ReturnType<Reconciler['desired']>): Promise<void> {
    const taskId = this.taskOf(desired, action.databaseId)
    const started = Date.now()
    const tookMs = (): number => Date.now() - started
    try {
      switch (action.kind) {
        case 'ensure-instance': {
          const exists = this.local.has(action.instanceId)
          await this.taskLog(taskId, `${exists ? 'updating' : 'creating'} instance ${action.instanceId}`, { instance_id: action.instanceId, node_name: action.nodeName })
          await this.orchestrator.ensureInstance(action.spec)
          const previous = this.applied.get(action.instanceId)
          const replicationHash = previous?.specHash === action.specHash ? previous.replicationHash : undefined
          await this.applied.set({
            instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash,
            role: previous?.role ?? (action.spec.primary === undefined ? 'primary' : 'replica'),
            ...(previous?.restarts === undefined ? {} : { restarts: previous.restarts }),
            ...(replicationHash === undefined ? {} : { replicationHash })
          })
          this.errors.delete(action.instanceId)
          await this.taskLog(taskId, `instance ${action.instanceId} is available (took ${tookMs()} ms)`, { instance_id: action.instanceId, duration_ms: tookMs() })
          break
        }
        case 'ensure-replication': {
          await this.taskLog(taskId, `configuring replication of node ${action.nodeName}`, { providers: action.providers.map(p => p.nodeName) })
          await this.ensureReplication(action, async (message) => { await this.taskLog(taskId, message, { node_name: action.nodeName }) })
          const previous = this.applied.get(action.instanceId)
          if (previous !== undefined) await this.applied.set({ ...previous, replicationHash: action.hash })
          this.errors.delete(action.instanceId)
          await this.taskLog(taskId, `node ${action.nodeName} subscribes to ${action.providers.map(p => p.nodeName).join(', ') || 'no other node yet'} (took ${tookMs()} ms)`)
          break
        }
        case 'stop-instance': {
          await this.taskLog(this.operationTask(desired, action.databaseId, action.instanceId), `stopping instance ${action.instanceId}`, { instance_id: action.instanceId })
          await this.orchestrator.stopInstance(action.instanceId)
          break
        }
        case 'restart-instance': {
          const opTask = this.operationTask(desired, action.databaseId, action.instanceId)
          await this.taskLog(opTask, `restarting instance ${action.instanceId}`, { instance_id: action.instanceId })
          await this.orchestrator.restartInstance(action.instanceId)
          const previous = this.applied.get(action.instanceId)
          if (previous !== undefined) await this.applied.set({ ...previous, restarts: action.restarts })
          await this.taskLog(opTask, `instance ${action.instanceId} restarted (took ${tookMs()} ms)`, { instance_id: action.instanceId, duration_ms: tookMs() })
          break
        }
        case 'promote-instance': {
          await this.promote(action)
          const previous = this.applied.get(action.instanceId)
          if (previous !== undefined) {
            const { replicationHash: _dropped, ...rest } = previous
            await this.applied.set({ ...rest, role: 'primary' })
          }
          this.errors.delete(action.instanceId)
          this.log.info({ instanceId: action.instanceId, ms: tookMs() }, 'promoted to primary')
          break
        }
        case 'rebuild-instance': {
          this.log.warn({ instanceId: action.instanceId }, 'former primary: discarding its data and cloning the new primary')
          await this.orchestrator.removeInstance(action.instanceId)
          await this.applied.delete(action.instanceId)
          this.forgetSubscriptions(action.instanceId)
          this.ha.forget(action.instanceId)
          await this.orchestrator.ensureInstance(action.spec)
          await this.applied.set({ instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash, role: 'replica' })
          this.errors.delete(action.instanceId)
          break
        }
        case 'remove-instance': {
          await this.taskLog(taskId, `removing instance ${action.instanceId}`, { instance_id: action.instanceId })
          await this.orchestrator.removeInstance(action.instanceId)
          await this.applied.delete(action.instanceId)
          this.forgetSubscriptions(action.instanceId)
          this.errors.delete(action.instanceId)
          await this.taskLog(taskId, `removed instance ${action.instanceId} (took ${tookMs()} ms)`)
          break
        }
      }
      this.backoff.delete(`${action.kind}:${action.instanceId}`)
    } catch (err) {
      const message = (err as Error).message
      this.log.warn({ action: action.kind, instanceId: action.instanceId, err: message }, 'action failed; will retry')
      const removal = action.kind === 'remove-instance' || action.kind === 'stop-instance'
      if (!removal) this.errors.set(action.instanceId, { message, attempts: (this.errors.get(action.instanceId)?.attempts ?? 0) + 1 })
      const key = `${action.kind}:${action.instanceId}`
      const failures = (this.backoff.get(key)?.failures ?? 0) + 1
      const delayMs = removal ? Math.min(30_000, 1000 * 2 ** (failures - 1)) : Math.min(5_000, 500 * 2 ** (failures - 1))
      this.backoff.set(key, { until: Date.now() + delayMs, failures })
      setTimeout(() => { this.requeue() }, delayMs).unref()
      await this.taskLog(taskId, `error while applying ${action.kind} to ${action.instanceId}: ${message}`, { instance_id: action.instanceId })
    }
  }

  private async connect (instanceId: string, database: string): Promise<pg.Client> {
    const status = this.local.get(instanceId) ?? await this.orchestrator.status(instanceId)
    if (status === undefined) throw new Error(`instance ${instanceId} does not exist`)
    const client = new pg.Client({ host: status.admin.host, port: status.admin.port, user: status.admin.user, database, connectionTimeoutMillis: 5_000, options: CONTROL_SESSION_OPTIONS })
    // Fencing and switchovers end client sessions, this daemon's own among them: a connection that dies must fail
    // its query, not crash the process with an unhandled 'error' event.
    client.on('error', (err: Error) => { this.log.debug({ instanceId, err: err.message }, 'admin connection error') })
    await client.connect()
    return client
  }

  /**
   * Promotes a replica that holds its node's lease. It stays read-only until the slots exist that the node's other
   * instances (physical) and the other nodes' subscriptions (logical, same names as on the old primary) need, so
   * no write happens that a follower's slot would miss.
   */
  private async promote (action: Extract<Action, { kind: 'promote-instance' }>): Promise<void> {
    await this.ha.setReadOnly(action.instanceId, true)
    await this.orchestrator.promote(action.instanceId)
    const admin = await this.connect(action.instanceId, 'postgres')
    try {
      await admin.query('SET default_transaction_read_only = off')
      for (const slot of action.replicaSlots) {
        await admin.query({ text: 'SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)', values: [slot] })
      }
    } finally {
      await admin.end().catch(() => {})
    }
    const client = await this.connect(action.instanceId, action.databaseName)
    try {
      await client.query('SET default_transaction_read_only = off')
      const isNode = (await client.query("SELECT 1 FROM pg_extension WHERE extname = 'pglogical'")).rowCount === 1 &&
        (await client.query('SELECT 1 FROM pglogical.local_node')).rowCount === 1
      if (isNode) {
        for (const peer of action.peers) {
          await client.query({
            text: `SELECT pg_create_logical_replication_slot(s.name, 'pglogical_output')
                     FROM (SELECT pglogical.pglogical_gen_slot_name(current_database()::name, $1::name, ('sub_' || $1 || '_' || $2)::name)::text AS name) s
                    WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots r WHERE r.slot_name = s.name)`,
            values: [action.nodeName, peer]
          })
        }
      }
    } finally {
      await client.end().catch(() => {})
    }
    await this.ha.setReadOnly(action.instanceId, false)
  }

  private operationTask (desired: ReturnType<Reconciler['desired']>, databaseId: string, id: string): string | undefined {
    return desired.databases.find(d => d.id === databaseId)?.instanceOperations?.[id]?.task_id
  }

  private async ensureReplication (action: Extract<Action, { kind: 'ensure-replication' }>, progress: (message: string) => Promise<void>): Promise<void> {
    const client = await this.connect(action.instanceId, action.databaseName)
    try {
      const driver: ReplicationDriver = driverFor(await detect(client))
      await driver.ensureNode(client, action.node)
      // Nodes gone from the spec: their subscriptions here and the slots they used here go.
      const existing = await driver.subscriptionStatus(client)
      for (const removed of new Set(existing.map(s => s.provider_node).filter(n => !action.nodes.includes(n)))) {
        await driver.dropSubscription(client, { provider: removed, subscriber: action.nodeName })
        await driver.dropSlotsFor(client, removed)
      }
      await dropStaleSlots(client, action.nodes)
      const source = action.sourceNode === undefined ? undefined : action.providers.find(p => p.nodeName === action.sourceNode)
      if (source === undefined) {
        await driver.ensureTablesReplicated(client)
        for (const p of action.providers) await driver.ensureSubscription(client, { provider: p.nodeName, subscriber: action.nodeName, providerDsn: p.dsn })
        await enablePaused(client, driver)
        return
      }
      await this.joinFromSource(client, driver, action, source, progress)
    } finally {
      await client.end().catch(() => {})
    }
  }

  /**
   * A node joining a live database, with no row lost while the others keep writing. The node first subscribes to its
   * source with a copy of schema and rows and with origin forwarding on (`sub_<S>_<N>_init`), so whatever the source
   * applies from the other nodes reaches it too. Then it subscribes to every other node directly and to the source
   * without forwarding. A barrier waits until the source has applied each other node's changes up to a point after
   * the direct subscriptions began, and until that has reached the new node; only then does the forwarding
   * subscription go. Rows that arrive twice resolve by last-update-wins. pglogical only: Spock's own add-node
   * procedure (sync events, slot and origin advance) is the way there.
   */
  private async joinFromSource (
    client: pg.Client, driver: ReplicationDriver, action: Extract<Action, { kind: 'ensure-replication' }>, source: NodeSpec, progress: (message: string) => Promise<void>
  ): Promise<void> {
    const me = action.nodeName
    const subscribed = new Set((await driver.subscriptionStatus(client)).map(s => s.name))
    const initName = `sub_${source.nodeName}_${me}_init`
    const directName = `sub_${source.nodeName}_${me}`
    const others = action.providers.filter(p => p !== source)
    if (driver.kind !== 'pglogical' || (subscribed.has(directName) && !subscribed.has(initName))) {
      for (const p of others) await driver.ensureSubscription(client, { provider: p.nodeName, subscriber: me, providerDsn: p.dsn })
      await driver.ensureSubscription(client, { provider: source.nodeName, subscriber: me, providerDsn: source.dsn, synchronizeStructure: !subscribed.has(directName), synchronizeData: !subscribed.has(directName) })
      await driver.ensureTablesReplicated(client)
      await enablePaused(client, driver)
      return
    }
    // The forwarding subscription uses replication sets of its own on the source: pglogical allows one
    // subscription per provider and set, and the direct one needs the standard sets.
    const joinSet = `pgmesh_join_${me}`
    const sourceConn = await connectDsn(source.dsn)
    try {
      for (const text of JOIN_SETS_SQL) await sourceConn.query({ text, values: [joinSet] })
    } finally {
      await sourceConn.end().catch(() => {})
    }
    await progress(`copying schema and rows from ${source.nodeName}, with forwarding`)
    if (!subscribed.has(initName)) {
      await client.query({
        text: `SELECT pglogical.create_subscription(subscription_name := $1::name, provider_dsn := $2::text,
                 replication_sets := ARRAY[$3::text, $3::text || '_insert_only'], synchronize_structure := true,
                 synchronize_data := true, forward_origins := '{all}')`,
        values: [initName, source.dsn, joinSet]
      })
    }
    await this.waitReplicating(driver, client, initName)
    // 'replicating' only says the worker runs; the schema and row copy is done when pglogical says so.
    await client.query({ text: 'SELECT pglogical.wait_for_subscription_sync_complete($1::name)', values: [initName] })
    await progress(`copy from ${source.nodeName} done; subscribing to ${others.map(p => p.nodeName).concat(source.nodeName).join(', ')} directly`)
    // The direct subscriptions are created, their slots start holding every change from now on, and they are
    // paused at once: two workers applying the same rows at the same time collide on unique keys, so the direct ones
    // only run after the forwarding one is gone (the rows they then repeat resolve by last-update-wins).
    const direct = [...others, source]
    for (const p of direct) {
      const name = `sub_${p.nodeName}_${me}`
      await driver.ensureSubscription(client, { provider: p.nodeName, subscriber: me, providerDsn: p.dsn })
      const peer = await connectDsn(p.dsn)
      try {
        await waitSlotExists(peer, await slotOf(client, name))
      } finally {
        await peer.end().catch(() => {})
      }
      await client.query({ text: 'SELECT pglogical.alter_subscription_disable($1::name, true)', values: [name] })
    }
    await progress('waiting until every change written before the direct subscriptions has arrived')
    const barrierConn = await connectDsn(source.dsn)
    try {
      for (const p of others) {
        // The source has applied everything p wrote before now (p's slot for the source confirms it)...
        const slot = await barrierConn.query({ text: 'SELECT sub_slot_name FROM pglogical.subscription WHERE sub_name = $1', values: [`sub_${p.nodeName}_${source.nodeName}`] })
        const slotName = slot.rows[0]?.sub_slot_name as string | undefined
        if (slotName === undefined) throw new Error(`node ${source.nodeName} has no subscription to ${p.nodeName} yet`)
        const peer = await connectDsn(p.dsn)
        try {
          await waitConfirmed(peer, slotName, `${source.nodeName} catching up with ${p.nodeName}`)
        } finally {
          await peer.end().catch(() => {})
        }
      }
      // ...and this node has received everything the source had by then, forwarded changes included.
      const initSlot = await slotOf(client, initName)
      await waitConfirmed(barrierConn, initSlot, `${me} catching up with ${source.nodeName}`)
      await progress('caught up; dropping the forwarding subscription')
      await client.query({ text: 'SELECT pglogical.drop_subscription($1::name, true)', values: [initName] })
      await barrierConn.query({ text: DROP_JOIN_SETS_SQL, values: [joinSet] })
      await dropSlot(barrierConn, initSlot)
    } finally {
      await barrierConn.end().catch(() => {})
    }
    for (const p of direct) {
      const name = `sub_${p.nodeName}_${me}`
      await client.query({ text: 'SELECT pglogical.alter_subscription_enable($1::name, true)', values: [name] })
      await this.waitReplicating(driver, client, name)
    }
    await driver.ensureTablesReplicated(client)
  }

  private async waitReplicating (driver: ReplicationDriver, client: pg.Client, name: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const status = (await driver.subscriptionStatus(client)).find(s => s.name === name)
      if (status?.status === 'replicating') return
      if (Date.now() > deadline) throw new Error(`subscription ${name} is not replicating (${status?.status ?? 'missing'})`)
      await new Promise(r => setTimeout(r, 200))
    }
  }

  private forgetSubscriptions (instanceId: string): void {
    this.subscriptions.delete(instanceId)
    this.subscriptionHealth.delete(instanceId)
    this.serverLogs.delete(instanceId)
    this.unreplicatedDdl.delete(instanceId)
  }

  /**
   * Primaries' subscription status, for observed state (and so for task completion), with the apply workers' errors
   * from the server's JSON log; restarts the subscriptions that stall (see SubscriptionHealth).
   */
  private async pollSubscriptions (): Promise<void> {
    // A poll that outlasts the interval (a restart, a slow server) is not overlapped: the log tails must not be read twice.
    if (this.stopped || this.polling) return
    this.polling = true
    try {
      await this.pollPrimaries()
    } finally {
      this.polling = false
    }
  }

  private async pollPrimaries (): Promise<void> {
    let down = 0
    for (const record of this.applied.all()) {
      if (record.replicationHash === undefined) continue
      const status = this.local.get(record.instanceId)
      if (status?.state !== 'running' || status.role !== 'primary') continue
      const databaseName = this.host.databases.generations().get(record.databaseId)?.databaseName
      if (databaseName === undefined) continue
      let client: pg.Client | undefined
      try {
        client = await this.connect(record.instanceId, databaseName)
        const kind = await detect(client)
        const driver = driverFor(kind)
        const errors = await this.readApplyErrors(record.instanceId, driver, client)
        const rows = await driver.subscriptionStatus(client)
        // Built only when a subscription is down: this runs every second for every local primary.
        let cluster: ObservedInstance[] | undefined
        const providerUp = (node: string): boolean => {
          cluster ??= this.host.health.clusterInstances()
          return cluster.some(i => i.database_id === record.databaseId && i.node_name === node && i.role === 'primary' && i.state === 'available')
        }
        let health = this.subscriptionHealth.get(record.instanceId)
        if (health === undefined) {
          health = new SubscriptionHealth()
          this.subscriptionHealth.set(record.instanceId, health)
        }
        const previous = this.subscriptions.get(record.instanceId)?.status
        const { reports, restart } = health.observe({ rows, errors, providerUp, now: Date.now() })
        this.subscriptions.set(record.instanceId, { status: reports, kind })
        down += reports.filter(r => r.status === 'down').length
        for (const report of reports) {
          if (report.error !== undefined && report.error !== previous?.find(p => p.name === report.name)?.error) {
            this.log.warn({ instanceId: record.instanceId, subscription: report.name, error: report.error }, 'subscription apply worker failed')
          }
        }
        if (JSON.stringify(previous) !== JSON.stringify(reports)) this.requeue()
        for (const name of restart) {
          this.log.info({ instanceId: record.instanceId, subscription: name }, 'restarting a stalled subscription')
          await driver.restartSubscription(client, name)
        }
        await this.readUnreplicatedDdl(record.instanceId, driver, client)
      } catch (err) {
        this.log.debug({ instanceId: record.instanceId, err: (err as Error).message }, 'subscription status not available')
      } finally {
        await client?.end().catch(() => {})
      }
    }
    this.host.metrics.subscriptionsDown.set(down)
  }

  /** What the node's automatic DDL replication refused, for the instance's report; a new refusal is logged too. */
  private async readUnreplicatedDdl (instanceId: string, driver: ReplicationDriver, client: pg.Client): Promise<void> {
    const found = await driver.unreplicatedDdl(client)
    const previous = this.unreplicatedDdl.get(instanceId)
    if (found === undefined || found.count === previous?.count) return
    this.unreplicatedDdl.set(instanceId, found)
    this.log.warn({ instanceId, count: found.count, reason: found.last.reason, role: found.last.role }, 'DDL not replicated to the other nodes')
    this.requeue()
  }

  /** The apply-worker errors this instance logged since the last poll (none when its log is not JSON). */
  private async readApplyErrors (instanceId: string, driver: ReplicationDriver, client: pg.Client): Promise<Array<{ subscription: string, error: string }>> {
    let tail = this.serverLogs.get(instanceId)
    if (tail === undefined) {
      tail = new JsonLogTail()
      this.serverLogs.set(instanceId, tail)
    }
    const entries = await tail.read(client)
    // Which worker is which subscription is asked only when something failed.
    if (!entries.some(e => e.error_severity === 'ERROR' || e.error_severity === 'FATAL')) return []
    const errors = applyErrors(entries, await driver.applyWorkers(client))
    this.host.metrics.subscriptionApplyErrors.inc(errors.length)
    return errors
  }

  /**
   * This host's instances as the anchor's Instance sees them, for heartbeats and reads. `updated_at` is when what
   * is reported last changed, so an unchanged report is the same bytes and readers can keep what they built from it.
   */
  observedInstances (): ObservedInstance[] {
    const out: Array<Omit<ObservedInstance, 'updated_at'>> = []
    const addresses = [...(this.host.document.doc.hosts?.[this.host.hostId]?.client_addresses ?? [])]
    const desired = this.host.databases.generations()
    for (const record of this.applied?.all() ?? []) {
      const status = this.local.get(record.instanceId)
      const failure = this.errors.get(record.instanceId)
      const error = failure?.message
      const generation = desired.get(record.databaseId)?.generation ?? 0
      let state: ObservedInstance['state']
      // Peers come up in any order, so a first failure is usually transient: failed after three in a row.
      if (failure !== undefined && failure.attempts >= FAILED_AFTER) state = 'failed'
      else if (status === undefined) state = 'unknown'
      else if (status.state === 'stopped') state = 'stopped'
      else if (status.state === 'crashed') state = 'degraded'
      else if (status.state === 'starting' || record.generation < generation) state = 'modifying'
      else state = 'available'
      const subs = this.subscriptions.get(record.instanceId)
      out.push({
        id: record.instanceId, database_id: record.databaseId, node_name: record.nodeName, host_id: this.host.hostId, state,
        ...(status?.role === undefined ? {} : { role: status.role }),
        ...(status === undefined ? {} : { port: status.port, postgres_version: status.postgresVersion, addresses }),
        // A failing instance reports the generation it fails to reach, so that task fails instead of waiting.
        generation: failure !== undefined && failure.attempts >= FAILED_AFTER ? Math.max(record.generation, generation) : record.generation,
        ...(error === undefined ? {} : { error }),
        ...(subs === undefined || status?.role !== 'primary' ? {} : { subscriptions: subs.status, replication: subs.kind }),
        ...(status?.role !== 'primary' || !this.unreplicatedDdl.has(record.instanceId) ? {} : { unreplicated_ddl: this.unreplicatedDdl.get(record.instanceId) }),
        ...(record.replicationHash === undefined ? {} : { node_ready: true }),
        ...(record.restarts === undefined ? {} : { restarts: record.restarts })
      })
    }
    for (const [id, failure] of this.errors) {
      if (this.applied.get(id) !== undefined) continue
      const [databaseId, nodeName] = parseInstance(id, desired)
      out.push({
        id, database_id: databaseId, node_name: nodeName, host_id: this.host.hostId, state: failure.attempts >= FAILED_AFTER ? 'failed' : 'creating',
        generation: desired.get(databaseId)?.generation ?? 0, error: failure.message
      })
    }
    return this.stampChanges(out)
  }

  /** Each instance's report with the time it last changed. */
  private stampChanges (reports: Array<Omit<ObservedInstance, 'updated_at'>>): ObservedInstance[] {
    const now = rfc3339()
    const seen = new Map<string, { fingerprint: string, since: string }>()
    const stamped = reports.map(report => {
      const fingerprint = JSON.stringify(report)
      const previous = this.reportedSince.get(report.id)
      const since = previous?.fingerprint === fingerprint ? previous.since : now
      seen.set(report.id, { fingerprint, since })
      return { ...report, updated_at: since }
    })
    this.reportedSince = seen
    return stamped
  }

  /** Closes the instance and node operations this host accepted, once the hosts report them done. */
  private async settleOperations (desired: ReturnType<Reconciler['desired']>, cluster: ObservedInstance[]): Promise<void> {
    const mine = (taskId: string): boolean => {
      const task = this.host.tasks.get(taskId)
      return task !== undefined && task.origin_host === this.host.hostId && (task.status === 'pending' || task.status === 'running')
    }
    for (const db of desired.databases) {
      for (const [id, op] of Object.entries(db.instanceOperations ?? {})) {
        if (!mine(op.task_id)) continue
        const task = this.host.tasks.get(op.task_id)
        const observed = cluster.find(i => i.id === id)
        const done = task?.type === 'stop_instance'
          ? observed?.state === 'stopped'
          : observed?.state === 'available' && (task?.type !== 'restart_instance' || (observed.restarts ?? 0) >= op.restarts)
        if (done) await this.host.tasks.settle(op.task_id, { status: 'completed' })
      }
      for (const [nodeName, request] of Object.entries(db.primaryChanges ?? {})) {
        if (!mine(request.task_id)) continue
        const node = db.spec?.nodes.find(n => n.name === nodeName)
        if (node === undefined) continue
        const primary = nodePrimary(db.id, nodeName, node.host_ids, db.primaries?.[nodeName])
        if (primary === undefined || primary.term <= request.from_term) continue
        if (primary.instanceId !== request.candidate) {
          await this.host.tasks.settle(request.task_id, { status: 'failed', error: `instance ${primary.instanceId} became the primary instead` })
          continue
        }
        const observed = cluster.find(i => i.id === primary.instanceId)
        if (observed?.role === 'primary' && observed.state === 'available') await this.host.tasks.settle(request.task_id, { status: 'completed' })
      }
    }
  }

  /** Closes the tasks this host started, once every host reports the outcome. */
  private async settleTasks (desired: ReturnType<Reconciler['desired']>): Promise<void> {
    const reachable = this.host.health.reachableHosts()
    const cluster = this.host.health.clusterInstances()
    await this.settleOperations(desired, cluster)
    for (const db of desired.databases) {
      const taskId = desired.records.get(db.id)?.taskId
      if (taskId === undefined) continue
      const task = this.host.tasks.get(taskId)
      if (task === undefined || task.origin_host !== this.host.hostId) continue
      if (task.status === 'canceling') {
        await this.host.databases.settle(db.id, taskId, { status: 'canceled' })
        await this.taskLog(taskId, 'task successfully canceled')
        continue
      }
      const clock = { now: Date.now(), taskStartedAt: Date.parse(task.created_at) }
      if (task.status === 'failed') {
        // The reconciler kept at it after the failure (a failed task does not pause it), and the hosts now report the
        // spec reached: the database is available again. The task keeps its failure.
        if (!db.deleted && outcome(db, cluster, reachable, clock).status === 'completed' && await this.host.databases.recover(db.id, taskId)) {
          await this.taskLog(taskId, 'every instance is available and replicating again: the database is available')
        }
        continue
      }
      if (task.status !== 'pending' && task.status !== 'running') continue
      const result = outcome(db, cluster, reachable, clock)
      if (result.status === 'running') {
        if (task.status === 'pending') await this.host.databases.settle(db.id, taskId, { status: 'running' })
        continue
      }
      await this.host.databases.settle(db.id, taskId, result)
      await this.taskLog(taskId, result.status === 'completed' ? `task completed` : `task failed: ${result.error}`)
    }
  }
}

/**
 * On a source node: replication sets `$1` (tables with a primary key) and `$1_insert_only` (without) holding every
 * replicated table, for one joining node's forwarding subscription. Idempotent.
 */
const JOIN_SETS_SQL: string[] = [
  `SELECT pglogical.create_replication_set($1::name)
     WHERE NOT EXISTS (SELECT 1 FROM pglogical.replication_set WHERE set_name = $1::name)`,
  `SELECT pglogical.create_replication_set(($1::text || '_insert_only')::name, true, false, false, true)
     WHERE NOT EXISTS (SELECT 1 FROM pglogical.replication_set WHERE set_name = ($1::text || '_insert_only')::name)`,
  `SELECT pglogical.replication_set_add_table(CASE WHEN t.set_name = 'default' THEN $1::name ELSE ($1::text || '_insert_only')::name END, t.relid)
     FROM pglogical.tables t
    WHERE t.set_name IN ('default', 'default_insert_only')
      AND NOT EXISTS (SELECT 1 FROM pglogical.tables u WHERE u.relid = t.relid AND u.set_name IN ($1::name, ($1::text || '_insert_only')::name))`
]

const DROP_JOIN_SETS_SQL = `SELECT pglogical.drop_replication_set(s.set_name)
  FROM pglogical.replication_set s WHERE s.set_name IN ($1::name, ($1::text || '_insert_only')::name)`

/** pgmesh pauses subscriptions only while a node joins: a join cut short by a crash must not leave them paused. */
async function enablePaused (client: pg.Client, driver: ReplicationDriver): Promise<void> {
  if (driver.kind !== 'pglogical') return
  for (const sub of await driver.subscriptionStatus(client)) {
    if (sub.status === 'disabled') await client.query({ text: 'SELECT pglogical.alter_subscription_enable($1::name, true)', values: [sub.name] })
  }
}

/** The provider-side slot name of a subscription of this node. */
async function slotOf (conn: pg.Client, subscription: string): Promise<string> {
  const slot = (await conn.query({ text: 'SELECT sub_slot_name::text AS slot FROM pglogical.subscription WHERE sub_name = $1', values: [subscription] })).rows[0]?.slot as string | undefined
  if (slot === undefined) throw new Error(`no subscription ${subscription}`)
  return slot
}

async function waitSlotExists (conn: pg.Client, slot: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await conn.query({ text: 'SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL', values: [slot] })).rowCount !== 1) {
    if (Date.now() > deadline) throw new Error(`slot ${slot} was not created`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** Drops a slot on this server, ending the walsender that holds it first. */
async function dropSlot (conn: pg.Client, slot: string): Promise<void> {
  await conn.query({ text: 'SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL', values: [slot] })
  for (let attempt = 0; ; attempt++) {
    try {
      await conn.query({ text: 'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', values: [slot] })
      return
    } catch (err) {
      // The walsender takes a moment to exit after being terminated.
      if (attempt >= 20) throw err
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
}

/**
 * On a provider: the pglogical slots of subscriptions whose subscriber is no longer a node of the database
 * (`…sub_<provider>_<subscriber>` and the `_init` one of a join), left when a removal raced the subscriber's exit.
 */
async function dropStaleSlots (conn: pg.Client, nodes: readonly string[]): Promise<void> {
  const slots = await conn.query("SELECT slot_name::text AS slot_name FROM pg_replication_slots WHERE plugin = 'pglogical_output' AND database = current_database()")
  for (const row of slots.rows as Array<{ slot_name: string }>) {
    const subscriber = /sub_[a-z0-9]+_([a-z0-9]+)(?:_init)?$/.exec(row.slot_name)?.[1]
    if (subscriber !== undefined && !nodes.includes(subscriber)) await dropSlot(conn, row.slot_name)
  }
}

/** Connects with a key=value DSN as formatDsn writes them. */
async function connectDsn (dsn: string): Promise<pg.Client> {
  const params: Record<string, string> = {}
  for (const m of dsn.matchAll(/(\w+)=('(?:[^'\\]|\\.)*'|\S+)/g)) {
    const raw = m[2] ?? ''
    params[m[1] ?? ''] = raw.startsWith("'") ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw
  }
  const client = new pg.Client({ host: params.host, port: Number(params.port), user: params.user, database: params.dbname, statement_timeout: 300_000, options: CONTROL_SESSION_OPTIONS })
  client.on('error', () => {})
  await client.connect()
  return client
}

function toLocal (s: InstanceStatus): LocalInstance {
  return { instanceId: s.instanceId, state: s.state, ...(s.role === undefined ? {} : { role: s.role }), port: s.port, postgresVersion: s.postgresVersion }
}

/** Which database and node an instance id belongs to (`<db>-<node>-<hash8>`), for instances that never applied. */
function parseInstance (id: string, desired: Map<string, unknown>): [string, string] {
  const parts = parseInstanceId(id)
  return parts !== undefined && desired.has(parts.databaseId) ? [parts.databaseId, parts.nodeName] : ['', '']
}
