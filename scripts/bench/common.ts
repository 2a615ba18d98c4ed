// What several benches share: the database spec they create many of, percentiles, and a process's CPU time.
import { readFile } from 'node:fs/promises'

/** The spec bench:api, bench:writes and bench:first-reads create N of: two nodes on host-1, a user with a password. */
export function benchSpec (i: number): Record<string, unknown> {
  return {
    database_name: `app_${i}`,
    postgresql_conf: { max_connections: 200, work_mem: '16MB' },
    database_users: [{ username: 'admin', password: `secret-${i}`, db_owner: true, attributes: ['LOGIN', 'CREATEDB'] }],
    nodes: [{ name: 'n1', host_ids: ['host-1'], port: 0 }, { name: 'n2', host_ids: ['host-1'], port: 0 }]
  }
}

/** The value at fraction `p` of an ascending list; NaN for an empty one. */
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN
}

/** CPU seconds a process has used (all its threads), from /proc (clock ticks of 1/100 s). */
export async function processCpuSeconds (pid: number | undefined): Promise<number> {
  if (pid === undefined) throw new Error('the process is not running')
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
