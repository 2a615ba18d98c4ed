import { Agent, request } from 'node:http'
import type { DaemonProcess } from './cluster.js'

export interface BurstResult {
  /** Each write's id and answer. */
  writes: Array<{ id: string, status: number, retryAfter: string | null, name?: string, error?: string }>
  /** Milliseconds each read took during the burst, by path. */
  reads: Record<string, number[]>
  /** The slowest reads: when each started (ms from the burst's start) and how long it took. */
  slowest: Array<{ path: string, at: number, ms: number }>
  /** Reads that did not answer 200 (status 0: no answer at all). */
  failedReads: Array<{ path: string, status: number }>
  burstMs: number
}

export function percentile (values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN
}

/** One HTTP request; status 0 when it got no answer. */
async function send (agent: Agent, url: string, method = 'GET', body?: string): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, text: string }> {
  return await new Promise((resolve) => {
    const req = request(url, { agent, method, headers: body === undefined ? {} : { 'content-type': 'application/json' }, timeout: 120_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, text }) })
      res.on('error', (err: NodeJS.ErrnoException) => { resolve({ status: 0, headers: {}, text: err.code ?? err.message }) })
    })
    req.on('error', (err: NodeJS.ErrnoException) => { resolve({ status: 0, headers: {}, text: err.code ?? err.message }) })
    req.on('timeout', () => { req.destroy(new Error('timeout')) })
    req.end(body)
  })
}

const spec = (i: number): Record<string, unknown> => ({
  database_name: `app_${i}`,
  database_users: [{ username: 'admin', password: `secret-${i}`, db_owner: true, attributes: ['LOGIN'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'] }]
})

/**
 * `count` creates at once against one host, each on a connection of its own (a crowd of clients), while one reader
 * times GETs of `readPaths` back to back on a connection of its own until the last write is answered.
 */
export async function createBurst (d: DaemonProcess, count: number, readPaths: readonly string[], prefix = 'burst'): Promise<BurstResult> {
  const writers = new Agent({ keepAlive: false, maxSockets: count })
  const reader = new Agent({ keepAlive: true, maxSockets: 1 })
  const reads: Record<string, number[]> = Object.fromEntries(readPaths.map(p => [p, []]))
  const failedReads: BurstResult['failedReads'] = []
  const timeline: Array<{ path: string, at: number, ms: number }> = []
  let done = false
  const t0 = performance.now()
  const readLoop = (async () => {
    while (!done) {
      for (const path of readPaths) {
        const started = performance.now()
        const { status } = await send(reader, `${d.url}${path}`)
        reads[path]!.push(performance.now() - started)
        timeline.push({ path, at: started - t0, ms: performance.now() - started })
        if (status !== 200) failedReads.push({ path, status })
      }
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  })()
  const writes = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const id = `${prefix}-${i}`
    const res = await send(writers, `${d.url}/v1/databases`, 'POST', JSON.stringify({ id, spec: spec(i) }))
    let name: string | undefined
    try { name = (JSON.parse(res.text) as { name?: string }).name } catch { /* not JSON */ }
    const retryAfter = res.headers['retry-after']
    return {
      id, status: res.status, retryAfter: typeof retryAfter === 'string' ? retryAfter : null,
      ...(name === undefined ? {} : { name }), ...(res.status === 0 ? { error: res.text } : {})
    }
  }))
  const burstMs = performance.now() - t0
  done = true
  await readLoop
  writers.destroy()
  reader.destroy()
  const slowest = timeline.sort((a, b) => b.ms - a.ms).slice(0, 5).map(r => ({ ...r, at: Math.round(r.at), ms: Math.round(r.ms) }))
  return { writes, reads, failedReads, burstMs, slowest }
}
