import type { Client } from 'pg'

/**
 * Applies changed settings to a running server without restarting it where Postgres allows: reloads, waits until the
 * server has read the files, and returns the settings that still need a restart, either because they can only be
 * set at server start (context `postmaster`) or because the server reports `pending_restart`. Reloading with such a
 * setting changed is harmless: the server keeps its value and applies the others.
 */
export async function reloadSettings (client: Client, settings: readonly string[]): Promise<string[]> {
  const { rows: atStart } = await client.query<{ name: string }>(
    "SELECT name FROM pg_settings WHERE name = ANY($1) AND context = 'postmaster'", [settings])
  const { rows } = await client.query<{ before: string }>('SELECT pg_conf_load_time()::text AS before, pg_reload_conf()')
  const before = rows[0]?.before
  for (let i = 0; i < 100; i++) {
    const { rows: reloaded } = await client.query<{ done: boolean }>('SELECT pg_conf_load_time() > $1::timestamptz AS done', [before])
    if (reloaded[0]?.done === true) break
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const { rows: pending } = await client.query<{ name: string }>('SELECT name FROM pg_settings WHERE pending_restart')
  return [...new Set([...atStart.map(r => r.name), ...pending.map(r => r.name)])].sort()
}
