// History benchmark (issue 18): a year of a busy cluster in the cluster document, through the real APIs the daemon
// writes with (Databases.create/update/settle, Backups.tick/started/finished, Tasks), then what that history costs:
// saved and on-disk (DocLog) bytes, load time and RSS of a fresh process opening it, sync-from-empty through
// Automerge's sync protocol between two ClusterStates, and the same figures after compaction into a new generation
// (history dropped, tasks finished over 30 days before moved to the task archive). A simulated clock spreads the
// lifecycles over the year.
//
// A full year (200,000 task lifecycles, 20,000 of them spec updates, on 200 databases) takes long on a 2-core
// machine, so it runs at fractions of it (BENCH_HISTORY_SCALES, default 0.01,0.02,0.05) and extrapolates linearly
// from the two largest, saying so. BENCH_HISTORY_SCALES=1 runs the real year.
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ClusterDocument, DataKey, NOTHING_OBSERVED } from '@pgmesh/cluster'
import { ClusterState, startGeneration } from '@pgmesh/state'
import pino from 'pino'

const YEAR_MS = 365 * 24 * 3600 * 1000
const YEAR_START = Date.parse('2026-01-01T00:00:00Z')
const YEAR_LIFECYCLES = 200_000
const YEAR_UPDATES = 20_000
const DATABASES = Number(process.env.BENCH_HISTORY_DATABASES ?? 200)
const LANES = 4
const HOSTS = ['host-1', 'host-2', 'host-3']
const logger = pino({ level: 'silent' })

/**
 * The year's clock: every `Date` the simulation makes (change metadata, task ids and timestamps) reads this, so a
 * year of tasks spans a year however fast it runs. `performance.now()`, which the figures use, is untouched.
 */
let simulatedNow = YEAR_START
function installSimulatedClock (): void {
  const RealDate = Date
  class SimulatedDate extends RealDate {
    constructor (...args: unknown[]) {
      if (args.length === 0) super(simulatedNow)
      else super(...(args as [string]))
    }

    static override now (): number { return simulatedNow }
  }
  globalThis.Date = SimulatedDate as DateConstructor
}

interface Measured { baselineRssMb: number, loadMs: number, rssMb: number, syncMs: number, syncBytes: number, syncRssMb: number, changes: number }

/** In a fresh process: open the state directory, then sync it into an empty replica. */
async function measure (stateDir: string): Promise<void> {
  // An empty replica first: Automerge's WebAssembly compiles on first use (seconds on a loaded machine), which is no
  // cost of the history; its RSS is the baseline the figures are compared with.
  const warmDir = await mkdtemp(join(tmpdir(), 'pgmesh-history-warm-'))
  const warm = await ClusterState.open({ dir: warmDir, hostId: 'host-0', logger })
  await warm.initialize('warm')
  await warm.close()
  await rm(warmDir, { recursive: true, force: true })
  const baselineRssMb = process.memoryUsage().rss / 2 ** 20
  const started = performance.now()
  const a = await ClusterState.open({ dir: stateDir, hostId: 'host-1', logger })
  const loadMs = performance.now() - started
  const rssMb = process.memoryUsage().rss / 2 ** 20
  const emptyDir = await mkdtemp(join(tmpdir(), 'pgmesh-history-sync-'))
  const b = await ClusterState.open({ dir: emptyDir, hostId: 'host-2', logger })
  let sa = A.initSyncState()
  let sb = A.initSyncState()
  let syncBytes = 0
  const syncStarted = performance.now()
  for (;;) {
    const [nextA, toB] = A.generateSyncMessage(a.automergeDoc, sa)
    sa = nextA
    if (toB !== null) {
      syncBytes += toB.length
      b.applyRemote('host-1', doc => { const [d, s] = A.receiveSyncMessage(doc, sb, toB); sb = s; return [d, undefined] })
    }
    const [nextB, toA] = A.generateSyncMessage(b.automergeDoc, sb)
    sb = nextB
    if (toA !== null) {
      syncBytes += toA.length
      a.applyRemote('host-2', doc => { const [d, s] = A.receiveSyncMessage(doc, sa, toA); sa = s; return [d, undefined] })
    }
    if (toA === null && toB === null) break
  }
  await b.flush()
  const syncMs = performance.now() - syncStarted
  if (A.getHeads(b.automergeDoc).join() !== A.getHeads(a.automergeDoc).join()) throw new Error('sync did not converge')
  const result: Measured = { baselineRssMb, loadMs, rssMb, syncMs, syncBytes, syncRssMb: process.memoryUsage().rss / 2 ** 20, changes: A.getAllChanges(a.automergeDoc).length }
  await a.close()
  await b.close()
  await rm(emptyDir, { recursive: true, force: true })
  process.stdout.write(JSON.stringify(result))
}

function measureInChild (stateDir: string): Measured {
  const out = execFileSync(process.execPath, [...process.execArgv, process.argv[1] ?? '', 'measure', stateDir], { encoding: 'utf8', maxBuffer: 1 << 20 })
  return JSON.parse(out) as Measured
}

function spec (workMem: string): Record<string, unknown> {
  return {
    database_name: 'app',
    postgresql_conf: { work_mem: workMem, max_connections: 200 },
    database_users: [{ username: 'app', password: 'app-password', db_owner: true }],
    nodes: HOSTS.map((h, i) => ({ name: `n${i + 1}`, host_ids: [h] })),
    backup_config: { repositories: [{ type: 'posix', base_path: '/backups' }] }
  }
}

interface Simulated { lifecycles: number, updates: number, seconds: number, logBytes: number, savedBytes: number, saveMs: number, tasks: number }

/** A fraction of a year through the real document APIs. */
async function simulate (stateDir: string, taskDir: string, scale: number): Promise<Simulated> {
  const state = await ClusterState.open({ dir: stateDir, hostId: 'host-1', logger })
  await state.initialize('bench')
  await state.change({ op: 'host.join' }, d => { for (const h of HOSTS) d.hosts[h] = { id: h } as never })
  const dataKey = DataKey.generate()
  const cluster = new ClusterDocument({
    hostId: 'host-1', state, taskLogDir: taskDir, remoteTaskLogs: async () => [], observed: () => NOTHING_OBSERVED,
    reachableHosts: () => new Set(HOSTS), defaultPostgresVersion: '17.6', dataKey: () => dataKey
  })
  const ids = Array.from({ length: DATABASES }, (_, i) => `db-${String(i).padStart(3, '0')}`)
  for (const id of ids) {
    const { task } = await cluster.databases.create({ id, spec: spec('4MB') })
    await cluster.databases.settle(id, task.task_id, { status: 'running' })
    await cluster.databases.settle(id, task.task_id, { status: 'completed' })
  }
  const lifecycles = Math.round(YEAR_LIFECYCLES * scale)
  const updates = Math.round(YEAR_UPDATES * scale)
  const updateEvery = Math.max(1, Math.round(lifecycles / updates))
  const started = performance.now()
  let next = 0
  let tick = Date.parse('2026-01-01T00:00:00Z')
  // Lanes work on disjoint databases at once, as a daemon's reconcilers do: their changes share fsyncs.
  await Promise.all(Array.from({ length: LANES }, async (_, lane) => {
    for (;;) {
      const i = next++
      if (i >= lifecycles) return
      simulatedNow = YEAR_START + Math.floor(i * YEAR_MS / lifecycles)
      const id = ids[(i * LANES + lane) % ids.length] ?? 'db-000'
      if (i % updateEvery === 0) {
        const { task } = await cluster.databases.update(id, { spec: spec(`${4 + (i % 60)}MB`) })
        await cluster.databases.settle(id, task.task_id, { status: 'running' })
        await cluster.databases.settle(id, task.task_id, { status: 'completed' })
      } else {
        tick += 60_000
        const task = await cluster.backups.tick(id, 'n1', 'hourly', new Date(tick).toISOString(), i % 24 === 0 ? 'full' : 'incr')
        if (task === undefined) throw new Error('no backup task')
        await cluster.backups.started(id, task.task_id, 'host-1', `${id}-n1-host-1`)
        await cluster.backups.finished(id, task.task_id, undefined)
      }
    }
  }))
  const seconds = (performance.now() - started) / 1000
  await state.flush()
  const logBytes = state.sizeBytes()
  const saveStarted = performance.now()
  const savedBytes = A.save(state.automergeDoc).length
  const saveMs = performance.now() - saveStarted
  const tasks = Object.keys(state.doc.tasks ?? {}).length
  await state.close()
  return { lifecycles, updates, seconds, logBytes, savedBytes, saveMs, tasks }
}

interface Compacted { ms: number, bytes: number, historyOnlyBytes: number, tasksKept: number, tasksArchived: number, archiveBytes: number }

/**
 * Compacts the state directory into a new generation from its current heads (as if every member acknowledged them),
 * the way a host does: finished tasks older than the retention go to the task archive.
 */
async function compact (stateDir: string, taskDir: string): Promise<Compacted> {
  const state = await ClusterState.open({ dir: stateDir, hostId: 'host-1', logger })
  const cluster = new ClusterDocument({
    hostId: 'host-1', state, taskLogDir: taskDir, remoteTaskLogs: async () => [], observed: () => NOTHING_OBSERVED,
    reachableHosts: () => new Set(HOSTS), defaultPostgresVersion: '17.6', dataKey: () => undefined
  })
  // For comparison: the genesis if history alone were compacted and every task record stayed.
  const historyOnlyBytes = A.save(startGeneration(state.automergeDoc, state.heads())).length
  const started = performance.now()
  await cluster.enterGeneration(ClusterDocument.startGeneration(state.automergeDoc, state.heads()))
  const ms = performance.now() - started
  const bytes = state.sizeBytes()
  const tasksKept = Object.keys(state.doc.tasks ?? {}).length
  const tasksArchived = cluster.taskArchive.size
  if (cluster.tasks.list({}).length !== tasksKept + tasksArchived) throw new Error('a task went missing')
  await state.close()
  const archiveBytes = (await stat(join(taskDir, 'archived-tasks.jsonl')).catch(() => ({ size: 0 }))).size
  return { ms, bytes, historyOnlyBytes, tasksKept, tasksArchived, archiveBytes }
}

const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(2)
const f1 = (n: number): string => n.toFixed(1)

interface Row { scale: number, sim: Simulated, before: Measured, compacted: Compacted, after: Measured }

async function run (): Promise<void> {
  const scales = (process.env.BENCH_HISTORY_SCALES ?? '0.01,0.02,0.05').split(',').map(Number)
  const rows: Row[] = []
  for (const scale of scales) {
    const root = await mkdtemp(join(tmpdir(), 'pgmesh-history-'))
    try {
      const stateDir = join(root, 'state')
      const sim = await simulate(stateDir, join(root, 'tasks'), scale)
      const before = measureInChild(stateDir)
      const compacted = await compact(stateDir, join(root, 'tasks'))
      const after = measureInChild(stateDir)
      rows.push({ scale, sim, before, compacted, after })
      console.log(`scale ${scale}: ${sim.lifecycles} task lifecycles (${sim.updates} spec updates) on ${DATABASES} databases in ${f1(sim.seconds)} s; ` +
        `${sim.tasks} task records; ${before.changes} changes`)
      console.log(`  before: saved ${mb(sim.savedBytes)} MB (save ${f1(sim.saveMs)} ms), DocLog ${mb(sim.logBytes)} MB, load ${f1(before.loadMs)} ms, ` +
        `RSS after load ${f1(before.rssMb)} MB (empty document: ${f1(before.baselineRssMb)} MB), sync-from-empty ${f1(before.syncMs)} ms (${mb(before.syncBytes)} MB sent, RSS ${f1(before.syncRssMb)} MB)`)
      console.log(`  compaction (${f1(compacted.ms)} ms): history alone would leave ${mb(compacted.historyOnlyBytes)} MB; with tasks finished ` +
        `over 30 days before moved to the archive (${compacted.tasksArchived} tasks, ${mb(compacted.archiveBytes)} MB on each host) ${compacted.tasksKept} stay in the document`)
      console.log(`  after compaction: on disk ${mb(compacted.bytes)} MB, load ${f1(after.loadMs)} ms, RSS after load ${f1(after.rssMb)} MB, ` +
        `sync-from-empty ${f1(after.syncMs)} ms (${mb(after.syncBytes)} MB sent, RSS ${f1(after.syncRssMb)} MB)`)
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  }
  const sorted = [...rows].sort((x, y) => x.scale - y.scale)
  const [lo, hi] = sorted.slice(-2)
  if (lo === undefined || hi === undefined || hi.scale >= 1) return
  // Linear in operations: Automerge keeps every change; the two largest runs give the slope.
  const at = (pick: (r: Row) => number): number => pick(hi) + (pick(hi) - pick(lo)) / (hi.scale - lo.scale) * (1 - hi.scale)
  console.log(`a year (extrapolated linearly from scales ${lo.scale} and ${hi.scale}, not run): ` +
    `before: saved ${mb(at(r => r.sim.savedBytes))} MB, DocLog ${mb(at(r => r.sim.logBytes))} MB, load ${f1(at(r => r.before.loadMs) / 1000)} s, ` +
    `RSS ${f1(at(r => r.before.rssMb))} MB, sync-from-empty ${f1(at(r => r.before.syncMs) / 1000)} s; ` +
    `history alone compacted: ${mb(at(r => r.compacted.historyOnlyBytes))} MB; ` +
    `after compaction with the task archive: ${mb(at(r => r.compacted.bytes))} MB (${Math.round(at(r => r.compacted.tasksKept))} tasks, a month's; ` +
    `this stays the figure in later years at the same rate, while the archive grows by ${mb(at(r => r.compacted.archiveBytes))} MB a year per host), ` +
    `load ${f1(at(r => r.after.loadMs))} ms, sync-from-empty ${f1(at(r => r.after.syncMs))} ms`)
}

if (process.argv[2] === 'measure') {
  await measure(process.argv[3] ?? '')
} else {
  installSimulatedClock()
  await run()
}
