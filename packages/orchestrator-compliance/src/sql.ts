import { createServer } from 'node:net'
import type { InstanceStatus } from '@pgmesh/orchestrator'
import pg from 'pg'

export interface Target { host: string, port: number, user?: string, password?: string, database?: string }

/** One query on a connection of its own (as the control plane's superuser unless `target` names a user). */
export async function query<R extends Record<string, unknown>> (target: Target, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ user: 'pgmesh', database: 'postgres', ...target, connectionTimeoutMillis: 5_000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** A query over the instance's admin connection (what `status.admin` promises: the superuser, no password). */
export async function admin<R extends Record<string, unknown>> (status: InstanceStatus, text: string, database = 'postgres'): Promise<R[]> {
  return await query<R>({ ...status.admin, database }, text)
}

/** Retries `check` until it stops throwing or the time is up (then its last error is thrown). */
export async function eventually<T> (check: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise(resolve => setTimeout(resolve, 200))
    }
  }
}

/** A TCP port free on this machine's loopback now (bound and released), for an instance to move to. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0) })
    })
  })
}
