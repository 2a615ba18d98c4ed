import { replicaSlotName, SYSTEM_SUPERUSER } from '@pgmesh/model'
import { CONTROL_SESSION_OPTIONS, type InstanceStatus } from '@pgmesh/orchestrator'
import {
  type ConnectPeer, detect, driverFor, pglogicalSlots, type Queryable, type ReplicationDriver, type ReplicationKind, waitConfirmed
} from '@pgmesh/replication'
import pg from 'pg'
import type { Logger } from 'pino'

/** A superuser session on an instance, as the parts that run SQL get it. */
export type AdminSession = Queryable

/**
 * Every statement the reconciler's parts run on their own instances, as named operations: the HA loop, the hand-over
 * and promotion hold no SQL. The daemon's implementation connects over the instance's admin socket; tests pass fakes.
 */
export interface InstanceAdmin {
  /** Which extension the instance replicates with (Spock when available, else pglogical), and its driver. */
  replicationOf: (session: AdminSession) => Promise<{ kind: ReplicationKind, driver: ReplicationDriver }>
  /** A superuser session on a local instance, connected to `database`, for `work` only. */
  withSession: <T>(instanceId: string, database: string, work: (session: AdminSession) => Promise<T>) => Promise<T>
  /** default_transaction_read_only for every new transaction; on, it also ends every client session. */
  setReadOnly: (instanceId: string, on: boolean) => Promise<void>
  /** Of these replicas, those the primary's Postgres now waits for on every commit (streaming, sync or quorum). */
  synchronousNow: (primaryId: string, replicaIds: readonly string[]) => Promise<string[]>
  /**
   * Before a hand-over, on the primary (already read-only for clients): every other node's slot here has confirmed
   * everything written so far. Returns the WAL position the candidate must replay.
   */
  drainToPeers: (primaryId: string, database: string, timeoutMs: number) => Promise<string>
  /** Waits until the server at `target` (a candidate replica, maybe on another host) has replayed `lsn`. */
  waitReplayed: (target: { host: string, port: number }, lsn: string, timeoutMs: number) => Promise<void>
  /**
   * On a just-promoted primary (still read-only): the physical slots its node's other instances stream from, and the
   * logical slots the other nodes' subscriptions to `nodeName` use here.
   */
  createPromotedSlots: (instanceId: string, database: string, nodeName: string, replicaSlots: readonly string[], peers: readonly string[]) => Promise<void>
  /** Opens sessions to other nodes' primaries by DSN (the join protocol works on its source and peers). */
  connectPeer: ConnectPeer
}

/** The daemon's InstanceAdmin: pg sessions as the control plane's superuser. */
export class PgInstanceAdmin implements InstanceAdmin {
  constructor (
    private readonly status: (instanceId: string) => Promise<InstanceStatus | undefined>,
    private readonly log: Logger,
    /** For other hosts' instances over TCP (their pg_hba wants scram for the superuser); in-process only. */
    private readonly superuserPassword: () => string | undefined = () => undefined
  ) {}

  private passwordOption (): { password?: string } {
    const password = this.superuserPassword()
    return password === undefined ? {} : { password }
  }

  private async connect (instanceId: string, database: string): Promise<pg.Client> {
    const status = await this.status(instanceId)
    if (status === undefined) throw new Error(`instance ${instanceId} does not exist`)
    const client = new pg.Client({ host: status.admin.host, port: status.admin.port, user: status.admin.user, database, connectionTimeoutMillis: 5_000, options: CONTROL_SESSION_OPTIONS })
    // Fencing and switchovers end client sessions, this daemon's own among them: a connection that dies must fail
    // its query, not crash the process with an unhandled 'error' event.
    client.on('error', (err: Error) => { this.log.debug({ instanceId, err: err.message }, 'admin connection error') })
    await client.connect()
    return client
  }

  async replicationOf (session: AdminSession): Promise<{ kind: ReplicationKind, driver: ReplicationDriver }> {
    const kind = await detect(session)
    return { kind, driver: driverFor(kind) }
  }

  async withSession<T> (instanceId: string, database: string, work: (session: AdminSession) => Promise<T>): Promise<T> {
    const client = await this.connect(instanceId, database)
    try {
      return await work(client)
    } finally {
      await client.end().catch(() => {})
    }
  }

  async setReadOnly (instanceId: string, on: boolean): Promise<void> {
    await this.withSession(instanceId, 'postgres', async (client) => {
      await client.query({ text: on ? 'ALTER SYSTEM SET default_transaction_read_only = on' : 'ALTER SYSTEM RESET default_transaction_read_only' })
      await client.query({ text: 'SELECT pg_reload_conf()' })
      if (on) {
        await client.query({ text: "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()" })
      }
    })
  }

  async synchronousNow (primaryId: string, replicaIds: readonly string[]): Promise<string[]> {
    const client = await this.connect(primaryId, 'postgres').catch(() => undefined)
    if (client === undefined) return []
    try {
      const rows = (await client.query("SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')")).rows as Array<{ application_name: string }>
      const names = new Set(rows.map(r => r.application_name))
      return replicaIds.filter(id => names.has(replicaSlotName(id)))
    } finally {
      await client.end().catch(() => {})
    }
  }

  async drainToPeers (primaryId: string, database: string, timeoutMs: number): Promise<string> {
    return await this.withSession(primaryId, database, async (conn) => {
      // This session only: the barrier below writes small WAL messages.
      await conn.query({ text: 'SET default_transaction_read_only = off' })
      // Every other node's slot, connected or not: a node that has not caught up would miss these rows for good
      // (the new primary's slots start where it is promoted), so the hand-over waits, or fails and undoes.
      const slots = (await conn.query<{ slot_name: string }>(pglogicalSlots())).rows
      for (const row of slots) await waitConfirmed(conn, row.slot_name, `peer slot ${row.slot_name}`, timeoutMs)
      return (await conn.query<{ lsn: string }>({ text: 'SELECT pg_current_wal_insert_lsn()::text AS lsn' })).rows[0]?.lsn as string
    })
  }

  async waitReplayed (target: { host: string, port: number }, lsn: string, timeoutMs: number): Promise<void> {
    const client = new pg.Client({ host: target.host, port: target.port, user: SYSTEM_SUPERUSER, database: 'postgres', connectionTimeoutMillis: 5000, ...this.passwordOption() })
    client.on('error', () => {})
    await client.connect()
    try {
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const row = (await client.query({ text: 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', values: [lsn] })).rows[0] as { done: boolean | null } | undefined
        if (row?.done === true) return
        if (Date.now() > deadline) throw new Error(`the candidate has not replayed ${lsn}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
    } finally {
      await client.end().catch(() => {})
    }
  }

  async createPromotedSlots (instanceId: string, database: string, nodeName: string, replicaSlots: readonly string[], peers: readonly string[]): Promise<void> {
    await this.withSession(instanceId, 'postgres', async (admin) => {
      await admin.query({ text: 'SET default_transaction_read_only = off' })
      for (const slot of replicaSlots) {
        await admin.query({ text: 'SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)', values: [slot] })
      }
    })
    await this.withSession(instanceId, database, async (client) => {
      await client.query({ text: 'SET default_transaction_read_only = off' })
      await (await this.replicationOf(client)).driver.ensureProviderSlots(client, nodeName, peers)
    })
  }

  /** Connects with a key=value DSN as formatDsn writes them. */
  readonly connectPeer: ConnectPeer = async (dsn) => {
    const params: Record<string, string> = {}
    for (const m of dsn.matchAll(/(\w+)=('(?:[^'\\]|\\.)*'|\S+)/g)) {
      const raw = m[2] ?? ''
      params[m[1] ?? ''] = raw.startsWith("'") ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw
    }
    // A peer across a partition drops packets: without a connect timeout the pass would wait out TCP's retries (~2 min).
    const client = new pg.Client({
      host: params.host, port: Number(params.port), user: params.user, database: params.dbname, connectionTimeoutMillis: 10_000, statement_timeout: 300_000,
      options: CONTROL_SESSION_OPTIONS, ...this.passwordOption()
    })
    client.on('error', () => {})
    await client.connect()
    return client
  }
}
