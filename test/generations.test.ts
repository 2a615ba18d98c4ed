// Document generations in running daemons: history compaction started by policy, followed by every host over the
// sync protocol, and refused with GenerationGapError on a host that missed the boundary. host-1 runs Postgres (its
// database's task lifecycles are the history); host-2 and host-3 are control-only.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

let cluster: TestCluster
let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess

interface DocumentInfo { heads: string[], generation: number }
async function documentOf (d: DaemonProcess): Promise<DocumentInfo> {
  return (await d.get('/v1/cluster')).body.document as DocumentInfo
}

/** A daemon's log so far (the daemons write theirs to files beside the config). */
function logOf (d: DaemonProcess): string {
  return readFileSync(d.options.logFile ?? '', 'utf8')
}

/** A gauge's value in a daemon's `/metrics`. */
async function gauge (d: DaemonProcess, name: string): Promise<number | undefined> {
  const line = (await d.get<string>('/metrics')).body.split('\n').find(l => l.startsWith(`${name} `))
  return line === undefined ? undefined : Number(line.split(' ')[1])
}

interface HostStatus { state: string, components: Record<string, { healthy: boolean, error?: string, details?: Record<string, unknown> }> }
/** Host `id`'s status as daemon `d` lists it in `GET /v1/hosts`. */
async function statusOf (d: DaemonProcess, id: string): Promise<HostStatus | undefined> {
  const hosts = (await d.get('/v1/hosts')).body.hosts as Array<{ id: string, status: HostStatus }>
  return hosts.find(h => h.id === id)?.status
}

async function waitTask (d: DaemonProcess, taskId: string): Promise<void> {
  const status = async (on: DaemonProcess): Promise<string> => (await on.get(`/v1/databases/app/tasks/${taskId}`)).body.status as string
  const task = await until(`task ${taskId} to finish`, async () => {
    const t = (await d.get(`/v1/databases/app/tasks/${taskId}`)).body
    return ['completed', 'failed', 'canceled'].includes(t.status as string) ? t : undefined
  }, 60_000, 200).catch(async (err: Error) => {
    throw new Error(`${err.message}; on host-1 ${await status(h1)}, on host-2 ${await status(h2)}; host-1 ${JSON.stringify(await documentOf(h1))}, host-2 ${JSON.stringify(await documentOf(h2))}`)
  })
  if (task.status !== 'completed') throw new Error(`task ${task.status as string}: ${task.error as string}\n${cluster.problems()}`)
}

describe('document generations across three daemons', () => {
  const taskIds: string[] = []

  beforeAll(async () => {
    cluster = await TestCluster.create('generations')
    // Small thresholds for the test: compact after 30 changes; a member silent for 4 s is not waited for; every
    // finished task leaves the document at the compaction (retention 0).
    const config = await cluster.writeFile('compaction.json', JSON.stringify({
      history_compaction: { after_changes: 30, check_ms: 500, max_silence_ms: 4000, task_retention_ms: 0 }
    }))
    ;[h1, h2, h3] = await cluster.initAndJoin(3, i => ({ reconcile: i === 1, args: ['--config', config], logFile: `${config}.host-${i}.log` })) as [DaemonProcess, DaemonProcess, DaemonProcess]
    await until('the three documents identical', async () => new Set(await Promise.all([h1, h2, h3].map(async d => JSON.stringify((await documentOf(d)).heads)))).size === 1)
  }, 120_000)

  afterAll(async () => {
    if (process.env.KEEP_LOGS !== undefined) for (const d of [h1, h2, h3]) await import('node:fs/promises').then(async fs => { await fs.copyFile(d.options.logFile ?? '', `${process.env.KEEP_LOGS}/${d.hostId}.log`) })
    await cluster?.destroy()
  })

  it('compacts after many task lifecycles: every running host on the next generation, a smaller document, everything still answers', async () => {
    const created = await h1.post('/v1/databases', {
      id: 'app',
      spec: { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(200)
    taskIds.push(created.body.task.task_id as string)
    await waitTask(h1, created.body.task.task_id as string)
    // At least 10 updates, and on until the cluster has compacted (each is about two changes: the update, its task's end).
    for (let i = 1; i <= 10 || (await documentOf(h1)).generation === 1; i++) {
      if (i > 40) throw new Error('no compaction after 40 task lifecycles')
      // Through host-1: a spec task is run by the host that accepted it, and only host-1 reconciles here.
      const spec = (await h2.get('/v1/databases/app')).body.spec
      spec.postgresql_conf = { work_mem: `${4 + i}MB` }
      const res = await h1.post('/v1/databases/app', { spec })
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      taskIds.push(res.body.task.task_id as string)
      await waitTask(h2, res.body.task.task_id as string)
    }
    await until('every host on a later generation, identical', async () => {
      const docs = await Promise.all([h1, h2, h3].map(documentOf))
      return docs.every(d => d.generation >= 2 && d.generation === docs[0]?.generation && JSON.stringify(d.heads) === JSON.stringify(docs[0]?.heads))
    }, 30_000)
    // The starter's account of its compaction: the document on its disk just before and just after.
    const started = logOf(h1).split('\n').filter(l => l.includes('started a new document generation')).map(l => JSON.parse(l) as { bytesBefore: number, bytesAfter: number })
    expect(started.length).toBeGreaterThan(0)
    console.log(`document on host-1's disk at the compaction: ${started[0]?.bytesBefore} -> ${started[0]?.bytesAfter} bytes`)
    expect(started[0]?.bytesAfter).toBeLessThan((started[0]?.bytesBefore ?? 0) / 2)

    // Databases and every task still answer on both hosts, the archived ones too (each host keeps its archive).
    for (const d of [h1, h2, h3]) {
      const db = (await d.get('/v1/databases/app')).body
      expect(db.spec.postgresql_conf).toEqual({ work_mem: `${4 + taskIds.length - 1}MB` })
      const listed = (await d.get('/v1/databases/app/tasks?limit=100')).body.tasks as Array<{ task_id: string, status: string }>
      for (const id of taskIds) expect(listed.map(t => t.task_id)).toContain(id)
      for (const id of taskIds) expect((await d.get(`/v1/databases/app/tasks/${id}`)).body.status).toBe('completed')
    }
    const archive = join(h2.options.dataDir, 'tasks', 'archived-tasks.jsonl')
    expect(existsSync(archive)).toBe(true)
    expect(readFileSync(archive, 'utf8').split('\n').filter(l => l !== '').length).toBeGreaterThan(3)

    // The cluster keeps working on the new generation: an update completes and every host sees it.
    const spec = (await h3.get('/v1/databases/app')).body.spec
    spec.postgresql_conf = { work_mem: '64MB' }
    const res = await h1.post('/v1/databases/app', { spec })
    await waitTask(h3, res.body.task.task_id as string)
  }, 300_000)

  it('a host stopped before the boundary and restarted after it is refused with GenerationGapError, keeps its document and shows the gap', async () => {
    expect(await gauge(h3, 'pgmesh_document_generation_gap')).toBe(0)
    expect((await statusOf(h3, 'host-3'))?.components.state?.healthy).toBe(true)
    await h3.stop()
    const left = await documentOf(h2)
    // The cluster moves on without host-3 (join tokens: document changes that need no task) and compacts again once
    // host-3 has been silent past max_silence_ms: the new boundary holds changes host-3 never had.
    for (let i = 0; i < 70; i++) expect((await h2.get('/v1/cluster/join-token')).status).toBe(200)
    await until('host-1 and host-2 on the generation after', async () => {
      const [d1, d2] = await Promise.all([documentOf(h1), documentOf(h2)])
      return d1.generation > left.generation && d2.generation === d1.generation
    }, 30_000)
    await h3.start()
    const before = await documentOf(h3)
    expect(before.generation).toBe(left.generation)
    await until('host-3 to report the generation gap', () => /GenerationGapError/.test(logOf(h3)), 20_000)
    expect(logOf(h3)).toMatch(/wiping its data directory and joining it again/)
    // It stays on its generation: nothing merged across the boundary, its document as it was.
    const doc = await documentOf(h3)
    expect(doc.generation).toBe(left.generation)
    expect(doc.heads).toEqual(before.heads)

    // What an operator sees: host-3's own entry in GET /v1/hosts has an unhealthy state component carrying the
    // error's message and the generations, its gauge is 1, and it still answers (and says it is ready).
    const status = await statusOf(h3, 'host-3')
    const message = status?.components.state?.error
    expect(status?.state).toBe('degraded')
    expect(status?.components.state?.healthy).toBe(false)
    expect(message).toMatch(/^this host's cluster document is generation \d+, the cluster compacted to generation \d+ from a point this host never reached/)
    expect(message).toMatch(/wiping its data directory and joining it again/)
    // The very error the log has.
    expect(logOf(h3)).toContain(JSON.stringify(message).slice(1, -1))
    expect(status?.components.state?.details).toMatchObject({ generation: left.generation, cluster_generation: (await documentOf(h1)).generation })
    expect(await gauge(h3, 'pgmesh_document_generation_gap')).toBe(1)
    expect((await h3.get('/readyz')).status).toBe(200)
    // Its heartbeat carries the component: the other members list host-3 degraded with the same message; they have no gap.
    await until('host-1 to list host-3 degraded', async () => (await statusOf(h1, 'host-3'))?.state === 'degraded', 10_000)
    expect((await statusOf(h1, 'host-3'))?.components.state?.error).toBe(message)
    expect(await gauge(h1, 'pgmesh_document_generation_gap')).toBe(0)
    expect((await statusOf(h1, 'host-1'))?.components.state?.healthy).toBe(true)
  }, 90_000)
})
