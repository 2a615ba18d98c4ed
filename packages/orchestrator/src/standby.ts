import { type InstanceSpec, replicaSlotName, SYSTEM_SUPERUSER } from '@pgmesh/model'
import pg from 'pg'
import type { Logger } from 'pino'
import type { InstanceStatus } from './orchestrator.js'
import { CONTROL_SESSION_OPTIONS, type StandbyOf } from './postgres-config.js'

/** Where an admin connection goes: a unix socket directory or a peer's address, with its port. */
export interface AdminTarget {
  host: string
  port: number
  database: string
  /** For a peer's instance over TCP (scram-sha-256); none over the local socket. */
  password?: string | undefined
}

/** A connection as the control plane's superuser for one piece of work, with CONTROL_SESSION_OPTIONS. */
export async function withAdminConnection<T> (target: AdminTarget, log: Logger, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const { password, ...where } = target
  const client = new pg.Client({ ...where, ...(password === undefined ? {} : { password }), user: SYSTEM_SUPERUSER, connectionTimeoutMillis: 5_000, options: CONTROL_SESSION_OPTIONS })
  // A server that goes away while the client idles emits 'error'; without a listener that would crash the process.
  client.on('error', (err: Error) => { log.debug({ err }, 'admin connection error') })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** What a running server says about itself, for InstanceStatus. */
export async function serverRole (client: pg.Client): Promise<Required<Pick<InstanceStatus, 'role' | 'postgresVersion'>>> {
  const { rows } = await client.query<{ in_recovery: boolean, version_num: number }>(
    "SELECT pg_is_in_recovery() AS in_recovery, current_setting('server_version_num')::int AS version_num")
  const row = rows[0] ?? { in_recovery: false, version_num: 0 }
  return {
    role: row.in_recovery ? 'replica' : 'primary',
    postgresVersion: `${Math.floor(row.version_num / 10000)}.${row.version_num % 10000}`
  }
}

/**
 * Whom an instance streams from after this ensureInstance: a new instance with `spec.primary` becomes its replica
 * (over a slot named after it); an existing replica follows a primary that moved; a primary is never demoted.
 */
export function nextStandbyOf (
  spec: Pick<InstanceSpec, 'instanceId' | 'primary'>, isNew: boolean, current: StandbyOf | undefined, log: Logger
): StandbyOf | undefined {
  if (isNew) return spec.primary === undefined ? undefined : { ...spec.primary, slotName: replicaSlotName(spec.instanceId) }
  if (spec.primary === undefined) return current
  if (current !== undefined) return { ...spec.primary, slotName: current.slotName }
  log.warn({ instanceId: spec.instanceId }, 'instance is a primary; the spec\'s primary is ignored (no demotion)')
  return undefined
}

/**
 * pg_basebackup's arguments for a clone into `pgdata` over the instance's physical slot, creating the slot only when
 * the primary has none yet. No `-R`: the standby settings go into the managed conf (which follows a moved primary)
 * and the caller writes standby.signal. The password comes from the file PGPASSFILE names in pg_basebackup's
 * environment (superuserPassfile), never from its arguments.
 */
export function basebackupArgs (primary: StandbyOf, pgdata: string, slotExists: boolean): string[] {
  return [
    '-h', primary.host, '-p', String(primary.port), '-U', SYSTEM_SUPERUSER, '-D', pgdata, '--no-password',
    '-X', 'stream', '-c', 'fast', '-S', primary.slotName, ...(slotExists ? [] : ['-C'])
  ]
}

export async function replicaSlotExists (primary: StandbyOf, log: Logger, password: string | undefined): Promise<boolean> {
  return await withAdminConnection({ host: primary.host, port: primary.port, database: 'postgres', password }, log, async client =>
    (await client.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1', [primary.slotName])).rowCount !== 0)
}

/** pg_promote, unless the server already is a primary; waits (up to 60 s) until it accepts writes. */
/** How often a promotion is checked for its end. */
const PROMOTION_POLL_MS = 5

/**
 * Promotes a server in recovery and returns once it is out of it. Not `pg_promote(wait => true)`: that checks every
 * 100 ms, so it returned ~100 ms after a promotion that takes a few, and a failover waited for it.
 */
export async function promoteServer (client: pg.Client, timeoutMs = 60_000): Promise<void> {
  const inRecovery = async (): Promise<boolean> => (await client.query<{ in_recovery: boolean }>('SELECT pg_is_in_recovery() AS in_recovery')).rows[0]?.in_recovery === true
  if (!await inRecovery()) return
  await client.query('SELECT pg_promote(false)')
  const deadline = Date.now() + timeoutMs
  while (await inRecovery()) {
    if (Date.now() > deadline) throw new Error(`the server is still in recovery ${timeoutMs / 1000} s after it was asked to promote`)
    await new Promise(resolve => setTimeout(resolve, PROMOTION_POLL_MS))
  }
}

/** Best effort: a replica that goes away (promoted or removed) must not make its primary keep WAL forever. */
export async function dropReplicaSlot (primary: StandbyOf, log: Logger, password: string | undefined): Promise<void> {
  try {
    await withAdminConnection({ host: primary.host, port: primary.port, database: 'postgres', password }, log, async client => {
      // The walsender of a just-stopped standby may take a moment to exit and release the slot.
      for (let i = 0; i < 50; i++) {
        const { rows } = await client.query<{ active: boolean }>(
          'SELECT active FROM pg_replication_slots WHERE slot_name = $1', [primary.slotName])
        if (rows[0] === undefined) return
        if (rows[0].active) {
          await new Promise(resolve => setTimeout(resolve, 100))
          continue
        }
        await client.query('SELECT pg_drop_replication_slot($1)', [primary.slotName])
        return
      }
      throw new Error(`slot ${primary.slotName} stayed active`)
    })
  } catch (err) {
    log.warn({ err, slot: primary.slotName, primary: `${primary.host}:${primary.port}` }, 'could not drop replica slot on primary')
  }
}
