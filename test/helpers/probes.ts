// Write probes for availability during rolling changes: one client per node inserting every `everyMs` into its
// node's current primary, recording when writes were refused. After an error a probe first reconnects to the server
// it wrote to and asks the API only when that fails: the API reports a server up only after its host has checked it,
// so asking it first would stretch an outage past the server's return by that lag (and make two in-turn restarts
// look overlapping when the second began right after the first was done).
import pg from 'pg'
import type { DaemonProcess } from './cluster.js'

export interface Outage { node: string, from: number, to: number }

interface Instance { id: string, node_name: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { role?: string } }

/**
 * Inserts `(id, node)` rows into `table` on one node's primary every `everyMs` (every 5 ms while refused); an outage
 * runs from the first refused attempt to the moment a connection that then took a write was ready.
 */
export class NodeProbe {
  readonly outages: Outage[] = []
  readonly acknowledged: string[] = []
  private stopped = false
  private done: Promise<void> | undefined
  private seq = 0
  private last: { addresses: string[], port: number } | undefined
  /** Ids stay unique across probes of the same node (a later run must not collide with an earlier one's rows). */
  private readonly run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`

  constructor (
    private readonly via: DaemonProcess, private readonly databaseId: string, readonly node: string,
    private readonly login: { user: string, password: string, database: string }, private readonly table: string, private readonly everyMs = 25
  ) {}

  start (): void {
    this.done = (async () => {
      let client: pg.Client | undefined
      let failingSince: number | undefined
      while (!this.stopped) {
        const attempt = Date.now()
        try {
          client ??= await this.connect()
          const ready = Date.now()
          const id = `${this.node}-${this.run}-${this.seq++}`
          await client.query(`INSERT INTO ${this.table} VALUES ($1, $2)`, [id, this.node])
          this.acknowledged.push(id)
          if (failingSince !== undefined) this.outages.push({ node: this.node, from: failingSince, to: ready })
          failingSince = undefined
        } catch (err) {
          // A read-only server is no longer its node's primary: ask the API next time.
          if ((err as { code?: string }).code === '25006') this.last = undefined
          failingSince ??= attempt
          await client?.end().catch(() => {})
          client = undefined
        }
        await new Promise(resolve => setTimeout(resolve, failingSince === undefined ? this.everyMs : Math.min(this.everyMs, 5)))
      }
      if (failingSince !== undefined) this.outages.push({ node: this.node, from: failingSince, to: Date.now() })
      await client?.end().catch(() => {})
    })()
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.done
  }

  /** The longest outage, ms (0 without one). */
  longestMs (): number {
    return Math.max(0, ...this.outages.map(o => o.to - o.from))
  }

  /** The server last written to, then (when it refuses) the primary the API names. */
  private async connect (): Promise<pg.Client> {
    if (this.last !== undefined) {
      try {
        return await this.open(this.last)
      } catch {}
    }
    const db = (await this.via.get<{ instances: Instance[] }>(`/v1/databases/${this.databaseId}`)).body
    const primary = db.instances.find(i => i.node_name === this.node && i.postgres?.role === 'primary' && i.state === 'available')
    const info = primary?.connection_info
    if (info === undefined) throw new Error(`no available primary of ${this.node}`)
    const client = await this.open(info)
    this.last = info
    return client
  }

  private async open (info: { addresses: string[], port: number }): Promise<pg.Client> {
    const client = new pg.Client({
      host: info.addresses[0], port: info.port, ...this.login, connectionTimeoutMillis: 2000, statement_timeout: 5000, query_timeout: 5000
    })
    client.on('error', () => {})
    try {
      await client.connect()
    } catch (err) {
      await client.end().catch(() => {})
      throw err
    }
    return client
  }
}

/** Pairs of outages on different nodes that overlap in time. */
export function overlappingOutages (outages: readonly Outage[]): Array<[Outage, Outage]> {
  const out: Array<[Outage, Outage]> = []
  for (const [i, a] of outages.entries()) {
    for (const b of outages.slice(i + 1)) {
      if (a.node !== b.node && a.from < b.to && b.from < a.to) out.push([a, b])
    }
  }
  return out
}
