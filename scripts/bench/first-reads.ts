// First reads benchmark (issue 18): what a host pays, in process and without a daemon, to load a document of N
// databases (BENCH_DATABASES, a list, default 2000) and then to list every database for the first time, as after a
// restart or a join. The databases are made through the real API (Databases.create, the bench:api spec shape) by
// one host; the load is timed by its parts (Automerge's load, of it the materializing of the JS document, indexing
// the change history), the join's too (the member's save, the joiner's adopt: load, log append, index), then the
// first listing per database, a cached one, and one after a host joins (which rebuilds only the entries naming it). CPU
// milliseconds of this process are the figures (a shared machine's wall time varies), wall time beside them.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ClusterDocument, DataKey, NOTHING_OBSERVED } from '@pgmesh/cluster'
import { ClusterState, plainStrings, DOCUMENT_FORMAT } from '@pgmesh/state'
import pino from 'pino'
import { benchSpec } from './common.js'

const SIZES = (process.env.BENCH_DATABASES ?? '2000').split(',').map(Number)
const HOSTS = ['host-1', 'host-2']
const logger = pino({ level: 'silent' })
const dataKey = DataKey.generate()

function documentOf (state: ClusterState, taskDir: string): ClusterDocument {
  return new ClusterDocument({
    hostId: 'host-1', state, taskLogDir: taskDir, remoteTaskLogs: async () => [], observed: () => NOTHING_OBSERVED,
    reachableHosts: () => new Set(HOSTS), defaultPostgresVersion: '17.6', dataKey: () => dataKey
  })
}

/** Milliseconds of this process's CPU time (the figure a loaded 2-core machine keeps steady) and of wall time. */
interface Cost { cpu: number, wall: number }

function timed<T> (fn: () => T): [T, Cost] {
  const cpu = process.cpuUsage()
  const wall = performance.now()
  const result = fn()
  const used = process.cpuUsage(cpu)
  return [result, { cpu: (used.user + used.system) / 1000, wall: performance.now() - wall }]
}

async function timedAsync<T> (fn: () => Promise<T>): Promise<[T, Cost]> {
  const cpu = process.cpuUsage()
  const wall = performance.now()
  const result = await fn()
  const used = process.cpuUsage(cpu)
  return [result, { cpu: (used.user + used.system) / 1000, wall: performance.now() - wall }]
}

const f = (n: number, digits = 0): string => n.toFixed(digits)

/** The first listing of every database. */
function firstListing (cluster: ClusterDocument, databases: number): Cost {
  const [listed, cost] = timed(() => cluster.databases.list().databases.length)
  if (listed !== databases) throw new Error(`listed ${listed} of ${databases} databases`)
  return cost
}

/** CPU ms (wall ms), and per database. */
function show (cost: Cost, databases?: number): string {
  return `${f(cost.cpu)} ms CPU (${f(cost.wall)} wall)` + (databases === undefined ? '' : `, ${f(cost.cpu / databases, 3)} ms per database`)
}

async function run (databases: number): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'pgmesh-first-reads-'))
  try {
    const stateDir = join(root, 'state')
    const state = await ClusterState.open({ dir: stateDir, hostId: 'host-1', logger })
    await state.initialize('bench')
    await state.change({ op: 'host.join' }, d => { for (const h of HOSTS) d.hosts[h] = { id: h, document_format: DOCUMENT_FORMAT } as never })
    const writer = documentOf(state, join(root, 'tasks'))
    const [, createMs] = await timedAsync(async () => {
      for (let i = 0; i < databases; i++) await writer.databases.create({ id: `db-${i}`, spec: benchSpec(i) })
    })
    await state.close()

    // A restart: the host's own files.
    const [restarted, openMs] = await timedAsync(async () => await ClusterState.open({ dir: stateDir, hostId: 'host-1', logger }))
    const [snapshot, saveMs] = timed(() => A.save(restarted.automergeDoc))
    const [loaded, loadMs] = timed(() => A.load(snapshot))
    const [, materializeMs] = timed(() => A.getBackend(loaded).materialize('/'))
    const [, plainMs] = timed(() => plainStrings(loaded))
    const [, metaMs] = timed(() => A.getChangesMetaSince(restarted.automergeDoc, []))
    const restartedDoc = documentOf(restarted, join(root, 'tasks-restarted'))
    const restartList = firstListing(restartedDoc, databases)
    const [, cachedMs] = timed(() => restartedDoc.databases.list())
    await restarted.change({ op: 'host.join' }, d => { d.hosts['host-3'] = { id: 'host-3', document_format: DOCUMENT_FORMAT } as never })
    const [, afterJoinMs] = timed(() => restartedDoc.databases.list())
    await restarted.close()

    // A join: the member's save, then the joiner adopts it.
    const joiner = await ClusterState.open({ dir: join(root, 'joiner'), hostId: 'host-2', logger })
    const [, adoptMs] = await timedAsync(async () => { await joiner.adopt(snapshot, 'host-1', () => {}) })
    const joinList = firstListing(documentOf(joiner, join(root, 'tasks-joiner')), databases)
    await joiner.close()

    const files = (await readFile(join(stateDir, 'doc.snapshot'))).length
    const { numOps } = A.stats(restarted.automergeDoc)
    console.log(`[${databases}] created in ${f(createMs.wall / 1000, 1)} s; snapshot ${f(files / 1e6, 2)} MB, ${A.getChangesMetaSince(restarted.automergeDoc, []).length} changes, ${numOps} operations`)
    console.log(`[${databases}] restart: ClusterState.open ${show(openMs)}; measured apart: A.load ${show(loadMs)} (of a load, materializing the JS document ${show(materializeMs)}), its scalar strings made plain ${show(plainMs)}, the change index's getChangesMetaSince ${show(metaMs)}`)
    console.log(`[${databases}] restart: first listing ${show(restartList, databases)}; again ${show(cachedMs)}; after a host joined (no spec names it) ${show(afterJoinMs, databases)}`)
    console.log(`[${databases}] join: the member's A.save ${show(saveMs)}; the joiner's adopt ${show(adoptMs)}; first listing ${show(joinList, databases)}`)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

for (const size of SIZES) await run(size)
