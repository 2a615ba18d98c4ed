// The main job on one machine: a local three-host pgmesh cluster on loopback (embedded process orchestrator).
// host-2 joins with the join token, host-3 by bootstrap multiaddr; then a 3-node database `demo` (one node per host)
// is created through the API while its task log is followed, replication is shown to work (a row written on each
// node reaches every node), and one psql connection string per node is printed. Ctrl-C deletes the database (its
// Postgres instances stop), stops the daemons, and kills whatever Postgres of the demo is still left.
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync, statSync } from 'node:fs'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import pg from 'pg'
import { DAEMON_NODE_FLAGS, DaemonProcess, type DaemonOptions, until } from '../test/helpers/cluster.js'

const MAIN = resolve(import.meta.dirname, '../cmd/pgmesh/bin/pgmesh.mjs')
const DATABASE_ID = 'demo'
const USER = 'admin'
const POLL_MS = 300

const sleep = async (ms: number): Promise<void> => { await new Promise(r => setTimeout(r, ms)) }
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

/** True when the postgres OS user can reach `dir`: every existing ancestor has o+x (only matters when run as root). */
function reachableByPostgres (dir: string): boolean {
  if (process.getuid?.() !== 0) return true
  for (let d = dir; ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false
    } catch { /* not there yet: made below with 0755 */ }
    if (d === dirname(d)) return true
  }
}

// Postgres runs as the postgres OS user, so the demo dir must be reachable by it: a clone under /root (0700) is not.
let root = resolve(process.env.PGMESH_DEMO_DIR ?? '.pgmesh-demo')
if (!reachableByPostgres(dirname(root))) {
  if (process.env.PGMESH_DEMO_DIR !== undefined) {
    console.error(`${root} is not reachable by the postgres OS user (an ancestor lacks o+x); choose another PGMESH_DEMO_DIR`)
    process.exit(1)
  }
  const fallback = join(tmpdir(), 'pgmesh-demo')
  console.log(`(${dirname(root)} is not reachable by the postgres OS user; using ${fallback} instead)`)
  root = fallback
}
const basePort = Number(process.env.PGMESH_DEMO_PORT ?? 3001)
const processPattern = `${root}/`.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

async function run (file: string, args: string[]): Promise<{ code: number, stdout: string }> {
  return await new Promise(res => {
    execFile(file, args, (err, stdout) => {
      res({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout })
    })
  })
}

/**
 * Stops every process whose command line names the demo dir: the Postgres instances (they outlive their daemon on
 * purpose) and daemons of an earlier run. Fast shutdown first, SIGKILL after 15 s.
 */
async function killLeftovers (): Promise<number> {
  const found = (await run('pgrep', ['-f', processPattern])).stdout.split('\n').filter(l => l !== '').length
  if (found === 0) return 0
  await run('pkill', ['-INT', '-f', processPattern])
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && (await run('pgrep', ['-f', processPattern])).code === 0) await sleep(200)
  await run('pkill', ['-KILL', '-f', processPattern])
  return found
}

/**
 * A daemon in its own process group, logging straight to its file: Ctrl-C in the terminal reaches only the demo,
 * which still needs the daemons to delete the database before it stops them.
 */
class DemoDaemon extends DaemonProcess {
  private proc: ChildProcess | undefined
  private procExited: Promise<void> | undefined

  constructor (options: DaemonOptions & { logFile: string }, private readonly onUnexpectedExit: (d: DemoDaemon, why: string) => void) {
    super(options)
  }

  override async start (): Promise<void> {
    const o = this.options
    const logFile = o.logFile ?? join(root, `${o.hostId}.log`)
    const args = [...DAEMON_NODE_FLAGS, MAIN, 'run', '--host-id', o.hostId, '--data-dir', o.dataDir, '--http-address', '127.0.0.1', '--http-port', String(o.httpPort),
      '--listen', `/ip4/127.0.0.1/tcp/${o.p2pPort}`, '--log-level', o.logLevel ?? 'info']
    if (o.bootstrap !== undefined && o.bootstrap.length > 0) args.push('--bootstrap', o.bootstrap.join(','))
    if (o.clusterKeyFile !== undefined) args.push('--cluster-key', o.clusterKeyFile)
    const fd = openSync(logFile, 'a')
    const child = spawn(process.execPath, args, { env: { ...process.env, ...o.env }, stdio: ['ignore', fd, fd], detached: true })
    closeSync(fd)
    this.proc = child
    this.procExited = new Promise(res => {
      child.once('exit', (code, signal) => {
        this.onUnexpectedExit(this, signal ?? `code ${String(code)}`)
        res()
      })
    })
    await until(`${o.hostId} to answer /readyz`, async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${o.hostId} exited: ${readFileSync(logFile, 'utf8').slice(-2000)}`)
      }
      const res = await fetch(`${this.url}/readyz`).catch(() => undefined)
      return res?.status === 200
    }, 20_000, 50)
  }

  override get running (): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null
  }

  override async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return
    this.proc?.kill(signal)
    await this.procExited
  }
}

interface Task { task_id: string, status: string, error?: string }
interface TaskLog { task_status: string, last_entry_id?: string, entries: Array<{ timestamp: string, message: string, fields?: { host_id?: string } }> }
interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number } }
interface Database { state: string, instances: Instance[] }

const DONE = new Set(['completed', 'failed', 'canceled'])

/**
 * Follows a database task's log until the task ends: every POLL_MS asks for the entries after the last one seen and
 * prints them as `<timestamp> <host_id> <message>`. Returns the finished task; throws when `stillWanted` says stop.
 */
async function followTask (d: DaemonProcess, taskId: string, timeoutMs: number, stillWanted: () => boolean = () => true): Promise<Task> {
  const deadline = Date.now() + timeoutMs
  let after: string | undefined
  for (;;) {
    if (!stillWanted()) throw new Error('no longer followed')
    const query = after === undefined ? '' : `?after_entry_id=${after}`
    const res = await d.get<TaskLog>(`/v1/databases/${DATABASE_ID}/tasks/${taskId}/log${query}`)
    if (res.status !== 200) throw new Error(`task log of ${taskId}: ${res.status} ${JSON.stringify(res.body)}`)
    if (!stillWanted()) throw new Error('no longer followed')
    for (const e of res.body.entries) console.log(`  ${e.timestamp} ${e.fields?.host_id ?? '-'} ${e.message}`)
    after = res.body.last_entry_id ?? after
    if (DONE.has(res.body.task_status)) {
      const task = await d.get<Task>(`/v1/databases/${DATABASE_ID}/tasks/${taskId}`)
      return task.body
    }
    if (Date.now() > deadline) throw new Error(`task ${taskId} still ${res.body.task_status} after ${seconds(timeoutMs)}`)
    await sleep(POLL_MS)
  }
}

// ---- shutdown -----------------------------------------------------------------------------------------------------

const hosts: DemoDaemon[] = []
const clients: pg.Client[] = []
let databaseRequested = false
let stopping: { at: number, force: boolean } | undefined

function onDaemonExit (d: DemoDaemon, why: string): void {
  if (stopping === undefined) console.error(`!! ${d.hostId} exited (${why}); its log: ${join(root, `${d.hostId}.log`)}`)
}

/** Deletes the database (its instances stop and go) while the daemons still run; false when that did not finish. */
async function deleteDatabase (): Promise<boolean> {
  const d = hosts.find(h => h.running)
  if (d === undefined) {
    console.error(`No daemon is running to delete "${DATABASE_ID}"; killing its Postgres instead.`)
    return false
  }
  try {
    const res = await d.request<{ task?: Task }>('DELETE', `/v1/databases/${DATABASE_ID}`)
    if (res.status === 404) return true
    if (res.status !== 200 || res.body.task === undefined) throw new Error(`${res.status} ${JSON.stringify(res.body)}`)
    console.log(`Deleting database "${DATABASE_ID}" (task ${res.body.task.task_id}):`)
    const task = await followTask(d, res.body.task.task_id, 60_000, () => stopping?.force !== true)
    if (task.status !== 'completed') throw new Error(`delete task ${task.status}: ${task.error ?? ''}`)
    return true
  } catch (err) {
    console.error(`Delete of "${DATABASE_ID}" did not finish (${(err as Error).message}); killing its Postgres instead.`)
    return false
  }
}

async function shutdown (code: number): Promise<never> {
  for (const c of clients.splice(0)) await c.end().catch(() => {})
  if (databaseRequested && stopping?.force !== true) await deleteDatabase()
  console.log('Stopping the daemons…')
  await Promise.all(hosts.map(async h => { await h.stop('SIGTERM') }))
  const left = await killLeftovers()
  if (left > 0) console.log(`Stopped ${left} leftover Postgres process(es) of ${root}.`)
  console.log('Stopped.')
  process.exit(code)
}

function onSignal (signal: NodeJS.Signals): void {
  if (stopping === undefined) {
    stopping = { at: Date.now(), force: false }
    console.log(`\n${signal}: stopping (Ctrl-C again to skip the delete)`)
    void shutdown(0)
  } else if (Date.now() - stopping.at > 2000 && !stopping.force) {
    // A signal relayed twice (terminal group + tsx/timeout) arrives within ms; a second Ctrl-C comes later.
    stopping.force = true
    console.log(`\n${signal}: skipping the delete`)
  }
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

// ---- the demo -----------------------------------------------------------------------------------------------------

function daemon (i: number, extra: Partial<DaemonOptions> = {}): DemoDaemon {
  return new DemoDaemon({
    hostId: `host-${i}`, dataDir: join(root, `host-${i}`), httpPort: basePort + i - 1, p2pPort: basePort + 100 + i - 1,
    logFile: join(root, `host-${i}.log`), logLevel: 'info', ...extra
  }, onDaemonExit)
}

async function startCluster (): Promise<DemoDaemon[]> {
  const h1 = daemon(1)
  hosts.push(h1)
  await h1.start()
  const init = await h1.get('/v1/cluster/init?cluster_id=demo')
  if (init.status !== 200) throw new Error(`init: ${JSON.stringify(init.body)}`)
  console.log(`host-1 initialized cluster "demo"; join token ${String(init.body.token).slice(0, 20)}…`)

  const h2 = daemon(2)
  hosts.push(h2)
  await h2.start()
  const joined = await h2.post('/v1/cluster/join', init.body)
  if (joined.status !== 204) throw new Error(`join: ${JSON.stringify(joined.body)}`)
  console.log('host-2 joined with the token')

  const h3 = daemon(3, { bootstrap: [await h1.multiaddr()], clusterKeyFile: join(root, 'host-1', 'cluster.key') })
  hosts.push(h3)
  await h3.start()
  await until('host-3 to join', async () => (await h3.get('/v1/cluster')).status === 200, 20_000)
  console.log('host-3 joined by bootstrap multiaddr and cluster key')

  await until('three healthy hosts', async () => {
    const res = await h3.get('/v1/hosts')
    return (res.body.hosts as Array<{ status: { state: string } }>).filter(h => h.status.state === 'healthy').length === 3
  }, 20_000, 100)
  console.log('\nCluster "demo" is up; every host serves the same API:')
  for (const h of hosts) console.log(`  ${h.hostId}  ${h.url}   (log: ${join(root, `${h.hostId}.log`)})`)
  return [h1, h2, h3]
}

/** Runs the operator's CLI against the cluster, its output on the terminal, the command shown first. */
async function pgmesh (args: string[], servers: string): Promise<number> {
  console.log(`$ pgmesh ${args.join(' ')}`)
  return await new Promise(res => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PGMESH_SERVER: servers } })
    child.once('exit', code => { res(code ?? 1) })
  })
}

/** Creates the database with the CLI, which follows the create task's log (every host's entries) until it ends. */
async function createDatabase (via: DaemonProcess, servers: string, password: string): Promise<Database> {
  console.log(`\nCreating the 3-node database "${DATABASE_ID}" with the CLI through ${via.hostId} (nodes n1, n2, n3 on host-1, host-2, host-3):`)
  const file = join(root, `${DATABASE_ID}.yaml`)
  // The spec holds the password: readable by this user only, and deleted once sent.
  await writeFile(file, [
    `database_name: ${DATABASE_ID}`,
    `database_users: [{ username: ${USER}, password: ${password}, db_owner: true, attributes: [LOGIN] }]`,
    'nodes: [{ name: n1, host_ids: [host-1] }, { name: n2, host_ids: [host-2] }, { name: n3, host_ids: [host-3] }]',
    ''
  ].join('\n'), { mode: 0o600 })
  databaseRequested = true
  const code = await pgmesh(['db', 'create', '-f', file, '--id', DATABASE_ID, '--wait'], `${via.url},${servers}`)
  await rm(file, { force: true })
  if (code !== 0) {
    if (stopping === undefined) console.error(`Daemon logs: ${hosts.map(h => join(root, `${h.hostId}.log`)).join(', ')}`)
    throw new ExitError(1)
  }
  const db = (await via.get<Database>(`/v1/databases/${DATABASE_ID}`)).body
  db.instances.sort((a, b) => a.node_name.localeCompare(b.node_name))
  return db
}

function address (i: Instance): { host: string, port: number } {
  const info = i.connection_info
  const host = info?.addresses[0]
  if (info === undefined || host === undefined) throw new Error(`no connection info for node ${i.node_name}`)
  return { host, port: info.port }
}

async function connect (i: Instance, user: string, password?: string): Promise<pg.Client> {
  const c = new pg.Client({ ...address(i), database: DATABASE_ID, user, password })
  c.on('error', () => {}) // the instance may stop under it at Ctrl-C
  await c.connect()
  return c
}

/** The proof: a plain CREATE TABLE on one node, one row written on each node, all rows on every node. */
async function showReplication (db: Database, password: string): Promise<void> {
  const [first] = db.instances
  if (first === undefined) throw new Error('the database has no instances')
  console.log(`\nMulti-master replication check:`)
  const nodes: pg.Client[] = []
  for (const i of db.instances) {
    const c = await connect(i, USER, password)
    clients.push(c)
    nodes.push(c)
  }
  await nodes[0]?.query('CREATE TABLE items (id int PRIMARY KEY, written_on text)')
  console.log(`  ${first.node_name}: CREATE TABLE items (id int PRIMARY KEY, written_on text) as ${USER}, plain DDL`)
  await until('public.items on every node', async () => {
    for (const c of nodes) if ((await c.query("SELECT to_regclass('public.items') AS t")).rows[0].t === null) return false
    return true
  }, 30_000, 100)
  const started = Date.now()
  for (const [n, c] of nodes.entries()) {
    const node = db.instances[n]?.node_name ?? ''
    await c.query('INSERT INTO public.items VALUES ($1, $2)', [n + 1, node])
    console.log(`  ${node}: INSERT INTO items VALUES (${n + 1}, '${node}') as ${USER}`)
  }
  const counts = await until('3 rows on every node', async () => {
    const all = await Promise.all(nodes.map(async c => Number((await c.query('SELECT count(*) FROM public.items')).rows[0].count)))
    return all.every(n => n === 3) ? all : undefined
  }, 30_000, 100)
  console.log(`  every node has every row ${seconds(Date.now() - started)} later: ${db.instances.map((i, n) => `${i.node_name} ${counts[n] ?? 0} rows`).join(', ')}`)
  for (const c of nodes) await c.end()
  clients.splice(0)
}

class ExitError extends Error {
  constructor (readonly code: number) { super(`exit ${code}`) }
}

try {
  const cleared = await killLeftovers()
  if (cleared > 0) console.log(`(stopped ${cleared} process(es) left by an earlier demo in ${root})`)
  await rm(root, { recursive: true, force: true })
  await mkdir(root, { recursive: true })
  await chmod(root, 0o755) // Postgres runs as the postgres OS user and must reach the instance dirs below

  const [h1, h2, h3] = await startCluster() as [DemoDaemon, DemoDaemon, DemoDaemon]
  const servers = hosts.map(h => h.url).join(',')
  const password = randomBytes(18).toString('base64url')
  const db = await createDatabase(h3, servers, password)
  await showReplication(db, password)
  console.log('')
  await pgmesh(['cluster', 'status'], servers)

  console.log(`\nConnect to any node (the password was generated for this run and is shown only here):`)
  for (const i of db.instances) {
    const { host, port } = address(i)
    console.log(`  ${i.node_name} (${i.host_id})  psql 'host=${host} port=${port} dbname=${DATABASE_ID} user=${USER} password=${password}'`)
  }
  const [n1, n2] = db.instances as [Instance, Instance]
  const a1 = address(n1)
  const a2 = address(n2)
  console.log(`\nTry multi-master replication yourself: plain DDL on any node reaches the others, e.g.
  PGPASSWORD=${password} psql -h localhost -p ${a1.port} -U ${USER} ${DATABASE_ID} -c "CREATE TABLE t (id int primary key, v text)"
then write on one node and read on another:
  PGPASSWORD=${password} psql -h localhost -p ${a1.port} -U ${USER} ${DATABASE_ID} -c "INSERT INTO t VALUES (1, 'written on n1')"
  PGPASSWORD=${password} psql -h localhost -p ${a2.port} -U ${USER} ${DATABASE_ID} -c "SELECT * FROM t"

The CLI talks to any host (PGMESH_SERVER or --server lists them, tried in order):
  export PGMESH_SERVER=${servers}
  node cmd/pgmesh/bin/pgmesh.mjs cluster status        node cmd/pgmesh/bin/pgmesh.mjs db get ${DATABASE_ID}
  PGPASSWORD=${password} node cmd/pgmesh/bin/pgmesh.mjs db psql ${DATABASE_ID} --node n2
  node cmd/pgmesh/bin/pgmesh.mjs task list --db ${DATABASE_ID}   node cmd/pgmesh/bin/pgmesh.mjs db history ${DATABASE_ID}
The API: curl -s ${h1.url}/v1/databases/${DATABASE_ID}   curl -s ${h2.url}/v1/hosts   curl -s ${h3.url}/metrics | grep pgmesh_

Ctrl-C deletes the database and stops the cluster.`)
  setInterval(() => {}, 1 << 30) // keep running until a signal
} catch (err) {
  if (stopping !== undefined) {
    // Ctrl-C came in the middle: shutdown() is under way and exits.
  } else {
    if (!(err instanceof ExitError)) {
      console.error((err as Error).message)
      for (const h of hosts) console.error(`--- ${h.hostId} log: ${join(root, `${h.hostId}.log`)}`)
    }
    stopping = { at: Date.now(), force: true }
    await shutdown(1)
  }
}
