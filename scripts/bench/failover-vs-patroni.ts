// Failover beside Patroni (issue 18): the same writer and the same kill against pgmesh and against Patroni + etcd, on
// this machine, in one run. For each system: a primary with two streaming replicas on loopback; a writer inserting
// every 50 ms through whichever of the three servers is writable (libpq's target_session_attrs=read-write, done by
// hand); then the primary's host dies (its daemon and every Postgres process of it SIGKILLed in one kill(2) round).
// failover = kill to the first INSERT a survivor acknowledges (each survivor tried every 100 ms); lost = rows the
// writer had acknowledged that the new primary lacks. Between runs the killed host comes back and rejoins as a replica;
// the next run kills whichever host is primary then.
//
// Systems (BENCH_SYSTEMS, comma-separated; default all):
//   pgmesh             defaults (lease 2.5 s); node n1 on host-1..3 plus a second node n2 on host-3 subscribing to it,
//                      so the new primary also recreates the logical slot a peer node reads from
//   pgmesh-fast        the same with --lease-ms 2000 on every host
//   patroni-default    Patroni's defaults: ttl 30, loop_wait 10, retry_timeout 10, asynchronous replication
//   patroni-fast       the tightest valid timings: ttl 10, loop_wait 2, retry_timeout 4 (ttl >= loop_wait + 2 * retry)
//   patroni-fast-sync  the same with synchronous_mode: true (what pgmesh does for a node's replicas)
// Needs root (Postgres runs as the postgres user), Debian's patroni and etcd-server (scripts/install-deps.sh bench).
// BENCH_RUNS (default 3) runs per system. Prints one line per run, a summary per system and the ratios.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { type DaemonProcess, TestCluster, until } from '../../test/helpers/cluster.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const SYSTEMS = (process.env.BENCH_SYSTEMS ?? 'pgmesh,pgmesh-fast,patroni-default,patroni-fast,patroni-fast-sync').split(',')
const TARGET_MS = 3000
const PG_BIN = '/usr/lib/postgresql/15/bin'

/** What an interrupted run must stop before it exits (daemons, Postgres, Patroni, etcd). */
const cleanups = new Set<() => Promise<void>>()
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void Promise.allSettled([...cleanups].map(async c => { await c() })).then(() => process.exit(130)) })
}

interface Login { user: string, password: string, database: string }
interface Ack { id: number, at: number, port: number }
interface RunResult {
  failoverMs: number
  gapMs: number
  lost: number
  acked: number
  /** How long gathering the victim's processes took before the kill (not counted in the failover). */
  gatheringMs: number
  phases: Record<string, number>
}

/** One row every 50 ms through the first writable server of `ports`, reconnecting (and searching again) after any error. */
class Writer {
  readonly acks: Ack[] = []
  private stopped = false
  private readonly done: Promise<void>

  constructor (ports: () => number[], login: Login, firstId: number) {
    this.done = (async () => {
      let client: pg.Client | undefined
      let id = firstId
      while (!this.stopped) {
        try {
          client ??= await connectWritable(ports(), login)
          const row = (await client.query<{ port: number }>('INSERT INTO ticks (id) VALUES ($1) RETURNING inet_server_port() AS port', [id])).rows[0]
          this.acks.push({ id, at: Date.now(), port: row?.port ?? 0 })
        } catch {
          await client?.end().catch(() => {})
          client = undefined
        }
        id++
        await sleep(50)
      }
      await client?.end().catch(() => {})
    })()
  }

  async stop (): Promise<void> {
    this.stopped = true
    await this.done
  }
}

/** libpq's target_session_attrs=read-write: the first server that accepts a connection and is not read-only. */
async function connectWritable (ports: number[], login: Login): Promise<pg.Client> {
  for (const port of ports) {
    const client = await connect(port, login).catch(() => undefined)
    if (client === undefined) continue
    const readOnly = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only').then(r => r.rows[0]?.transaction_read_only, () => 'on')
    if (readOnly === 'off') return client
    await client.end().catch(() => {})
  }
  throw new Error('no writable server')
}

async function connect (port: number, login: Login): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port, ...login, connectionTimeoutMillis: 2000, query_timeout: 5000 })
  client.on('error', () => {})
  try {
    await client.connect()
    return client
  } catch (err) {
    await client.end().catch(() => {})
    throw err
  }
}

async function query<T extends pg.QueryResultRow> (port: number, login: Login, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = await connect(port, login)
  try {
    return (await client.query<T>(sql, params)).rows
  } finally {
    await client.end().catch(() => {})
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** Every descendant of `pid` (children, their children, ...). */
function descendants (pid: number): number[] {
  let out = ''
  try { out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }) } catch { return [] }
  return out.split('\n').map(s => Number(s.trim())).filter(n => n > 0).flatMap(child => [child, ...descendants(child)])
}

/** Pids of running processes whose command line contains `text`. */
function pidsMatching (text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', '--', text], { encoding: 'utf8' }).split('\n').map(Number).filter(n => n > 0 && n !== process.pid)
  } catch {
    return []
  }
}

/** `pids` and all their descendants: gathered before a kill so that nothing restarts in between. */
function withDescendants (pids: number[]): number[] {
  return [...new Set(pids.flatMap(p => [p, ...descendants(p)]))]
}

/** The host dies: SIGKILL to every one of `pids`. */
function killAll (pids: number[]): void {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL') } catch { /* a short-lived backend may be gone already */ }
  }
}

/**
 * The shared measurement: writer on, the kill, a survivor's first acknowledged write, the writer onto the new
 * primary, then the rows the new primary lacks.
 */
async function measure (run: number, ports: () => number[], login: Login, victimPort: number, victimPids: () => number[]): Promise<Omit<RunResult, 'phases'> & { killedAt: number, newPort: number }> {
  const writer = new Writer(ports, login, run * 1_000_000)
  await until('20 acknowledged rows', () => writer.acks.length >= 20, 60_000, 50)
  // Gathering the process tree runs ps once per process (0.1-1 s on a loaded machine): the clock starts after it,
  // at the kill itself, or the failover would be counted from a moment the victim was still alive.
  const gatheringSince = Date.now()
  const victims = victimPids()
  const killedAt = Date.now()
  killAll(victims)
  const survivors = ports().filter(p => p !== victimPort)
  let newPort = 0
  let acceptedAt = 0
  await until('a survivor accepting a write', async () => {
    for (const port of survivors) {
      const ok = await query(port, login, 'INSERT INTO failover_probe (run, port) VALUES ($1, inet_server_port())', [run]).then(() => true, () => false)
      if (ok) { acceptedAt = Date.now(); newPort = port; return true }
    }
    await sleep(100)
    return undefined
  }, 240_000, 0)
  await until('the writer on the new primary', () => writer.acks.filter(a => a.port === newPort && a.at > killedAt).length >= 3, 30_000, 100).catch(() => {})
  await writer.stop()
  const present = new Set((await query<{ id: string }>(newPort, login, 'SELECT id FROM ticks WHERE id >= $1 AND id < $2', [run * 1_000_000, (run + 1) * 1_000_000])).map(r => Number(r.id)))
  const lost = writer.acks.filter(a => !present.has(a.id)).length
  const firstOnNew = writer.acks.find(a => a.port === newPort && a.at > killedAt)
  return { failoverMs: acceptedAt - killedAt, gapMs: firstOnNew === undefined ? Number.NaN : firstOnNew.at - killedAt, lost, acked: writer.acks.length, killedAt, newPort, gatheringMs: killedAt - gatheringSince }
}

// ------------------------------------------------------------------------------------------------ pgmesh

interface Instance { id: string, node_name: string, host_id: string, state: string, postgres?: { role?: string }, connection_info?: { addresses: string[], port: number } }

async function benchPgmesh (system: string, leaseMs?: number): Promise<RunResult[]> {
  const cluster = await TestCluster.create(`bench-${system}`, { logLevel: 'info', args: leaseMs === undefined ? [] : ['--lease-ms', String(leaseMs)] })
  const results: RunResult[] = []
  const stop = async (): Promise<void> => { await cluster.destroy() }
  cleanups.add(stop)
  try {
    const hosts = await cluster.initAndJoin(3)
    const observer = hosts[0] as DaemonProcess
    const login: Login = { user: 'admin', password: 'bench-password', database: 'bench' }
    const created = await observer.post('/v1/databases', {
      id: 'bench',
      spec: {
        database_name: 'bench',
        database_users: [{ username: 'admin', password: login.password, attributes: ['LOGIN'], db_owner: true }],
        nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2', 'host-3'] }, { name: 'n2', host_ids: ['host-3'] }]
      }
    })
    if (created.status !== 200) throw new Error(JSON.stringify(created.body))
    await until('database available', async () => (await observer.get(`/v1/databases/bench/tasks/${created.body.task.task_id as string}`)).body.status === 'completed', 300_000, 200)
    const all = async (d: DaemonProcess = observer): Promise<Instance[]> => ((await d.get('/v1/databases/bench')).body as { instances: Instance[] }).instances
    // A rebuilt former primary may come back on another port: the writer's list follows the API.
    let n1 = (await all()).filter(i => i.node_name === 'n1')
    let ports = n1.map(i => i.connection_info?.port ?? 0)
    const primaryOf = (list: Instance[]): Instance | undefined => list.find(i => i.node_name === 'n1' && i.postgres?.role === 'primary' && i.state === 'available')
    // Replication's state is visible to a superuser only (pg_stat_replication).
    const superuser: Login = { user: 'pgmesh', password: await observer.superuserPassword(), database: 'bench' }
    const first = primaryOf(await all())
    await query(first?.connection_info?.port ?? 0, login, 'CREATE TABLE ticks (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); CREATE TABLE failover_probe (id bigserial PRIMARY KEY, run int, port int, at timestamptz NOT NULL DEFAULT clock_timestamp())')

    for (let run = 1; run <= RUNS; run++) {
      // Ready: every host's API shows n1's three instances available, and Postgres agrees: exactly one server out of
      // recovery, streaming to both others (synchronous, so eligible to take over); then 2 s of quiet.
      const primaryPort = await until('n1 ready: a primary streaming to two available replicas', async () => {
        const views = await Promise.all(hosts.filter(h => h.running).map(async h => await all(h).catch(() => [])))
        if (!views.every(list => list.filter(i => i.node_name === 'n1' && i.state === 'available').length === 3)) return undefined
        n1 = (views[0] ?? []).filter(i => i.node_name === 'n1')
        ports = n1.map(i => i.connection_info?.port ?? 0)
        const recovery = await Promise.all(ports.map(async port => await query<{ r: boolean }>(port, superuser, 'SELECT pg_is_in_recovery() AS r').then(r => r[0]?.r, () => undefined)))
        const writable = ports.filter((_, k) => recovery[k] === false)
        if (writable.length !== 1 || recovery.some(r => r === undefined)) return undefined
        // The physical replicas, synchronous (the logical walsender of n2's subscription is listed there too).
        const [row] = await query<{ n: number }>(writable[0] as number, superuser, "SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')")
        if (row?.n !== 2) return undefined
        const disagree = views.filter(list => primaryOf(list)?.connection_info?.port !== writable[0])
        if (disagree.length > 0) console.error(`an API view names another primary than Postgres does: ${JSON.stringify(disagree.map(l => l.filter(i => i.node_name === 'n1').map(i => [i.host_id, i.postgres?.role, i.state])))}`)
        return writable[0]
      }, 300_000, 250)
      await sleep(2000)
      const primary = n1.find(i => i.connection_info?.port === primaryPort) as Instance
      const victim = hosts.find(h => h.hostId === primary.host_id) as DaemonProcess
      const m = await measure(run, () => ports, login, primary.connection_info?.port ?? 0,
        () => withDescendants([...(victim.pid === undefined ? [] : [victim.pid]), ...pidsMatching(`${victim.options.dataDir}/`)]))
      await victim.stop('SIGKILL')
      const newPrimary = n1.find(i => i.connection_info?.port === m.newPort)
      const newHost = hosts.find(h => h.hostId === newPrimary?.host_id)
      const phases = pgmeshPhases(newHost?.output ?? '', m.killedAt)
      results.push(report(system, run, `${victim.hostId} -> ${newPrimary?.host_id ?? '?'}`, m, phases))
      await victim.start()
    }
  } catch (err) {
    console.error(cluster.problems())
    throw err
  } finally {
    cleanups.delete(stop)
    await stop()
  }
  return results
}

/** Where the seconds went, from the new primary's host log (ms after the kill). */
function pgmeshPhases (log: string, killedAt: number): Record<string, number> {
  const entries = log.split('\n').filter(l => l.startsWith('{')).map(l => { try { return JSON.parse(l) as { time: number, msg: string, promoteMs?: number, slotsMs?: number } } catch { return undefined } })
    .filter((e): e is { time: number, msg: string, promoteMs?: number, slotsMs?: number } => e !== undefined && e.time >= killedAt)
  const at = (msg: string): number | undefined => entries.find(e => e.msg === msg)?.time
  const detected = at('primary gone; the lease is not free yet') ?? at('primary gone: this replica holds the lease and becomes primary')
  const leased = at('primary gone: this replica holds the lease and becomes primary')
  const promoted = entries.find(e => e.msg === 'promoted to primary')
  const phases: Record<string, number> = {}
  if (detected !== undefined) phases.detected = detected - killedAt
  if (leased !== undefined) phases.lease = leased - killedAt
  if (promoted !== undefined) {
    phases.promote = promoted.promoteMs ?? Number.NaN
    phases.slots = promoted.slotsMs ?? Number.NaN
    phases.writable = promoted.time - killedAt
  }
  return phases
}

// ------------------------------------------------------------------------------------------------ Patroni

const ETCD_CLIENT = [23791, 23792, 23793]
const ETCD_PEER = [23801, 23802, 23803]
const REST = [28001, 28002, 28003]
const PG_PORTS = [25001, 25002, 25003]

interface PatroniProfile { ttl: number, loopWait: number, retryTimeout: number, synchronous: boolean }
const PROFILES: Record<string, PatroniProfile> = {
  'patroni-default': { ttl: 30, loopWait: 10, retryTimeout: 10, synchronous: false },
  'patroni-fast': { ttl: 10, loopWait: 2, retryTimeout: 4, synchronous: false },
  'patroni-fast-sync': { ttl: 10, loopWait: 2, retryTimeout: 4, synchronous: true }
}

async function benchPatroni (system: string, profile: PatroniProfile): Promise<RunResult[]> {
  const dir = mkdtempSync('/tmp/pgmesh-bench-patroni-')
  chmodSync(dir, 0o755)
  const password = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2)
  const login: Login = { user: 'postgres', password, database: 'postgres' }
  const etcd: ChildProcess[] = []
  const patroni: Array<ChildProcess | undefined> = []
  const results: RunResult[] = []
  const postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
  const postgresGid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
  const nodePids = (i: number): number[] => {
    const pids: number[] = []
    const p = patroni[i]
    if (p?.pid !== undefined && p.exitCode === null && p.signalCode === null) pids.push(p.pid)
    try {
      const postmaster = Number(readFileSync(join(dir, `node${i + 1}`, 'data', 'postmaster.pid'), 'utf8').split('\n')[0])
      if (postmaster > 0 && pidsMatching(`-D ${join(dir, `node${i + 1}`, 'data')}`).includes(postmaster)) pids.push(postmaster)
    } catch { /* no server running */ }
    return pids
  }
  const startPatroni = (i: number): void => {
    const d = join(dir, `node${i + 1}`)
    const child = spawn('setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', 'env', '-i', `HOME=${d}`, 'PATH=/usr/bin:/bin', 'LANG=C.UTF-8', 'LC_ALL=C.UTF-8', 'TZ=UTC', '/usr/bin/patroni', join(d, 'patroni.yml')], { stdio: ['ignore', 'pipe', 'pipe'] })
    const log: string[] = []
    child.stdout?.on('data', (b: Buffer) => { log.push(b.toString()) })
    child.stderr?.on('data', (b: Buffer) => { log.push(b.toString()) })
    logs[i] = log
    patroni[i] = child
  }
  const logs: string[][] = [[], [], []]
  const stop = async (): Promise<void> => {
    for (let i = 0; i < 3; i++) killAll(withDescendants(nodePids(i)))
    for (const e of etcd) e.kill('SIGKILL')
    await sleep(500) // the killed processes let go of their files
    rmSync(dir, { recursive: true, force: true })
  }
  cleanups.add(stop)
  const restCode = async (i: number, path: string): Promise<number> => await fetch(`http://127.0.0.1:${REST[i] as number}${path}`, { signal: AbortSignal.timeout(2000) }).then(r => r.status, () => 0)
  try {
    const cluster = ETCD_PEER.map((p, i) => `e${i + 1}=http://127.0.0.1:${p}`).join(',')
    for (let i = 0; i < 3; i++) {
      const d = join(dir, `etcd${i + 1}`)
      mkdirSync(d, { mode: 0o700 })
      etcd.push(spawn('/usr/bin/etcd', ['--name', `e${i + 1}`, '--data-dir', join(d, 'data'),
        '--listen-client-urls', `http://127.0.0.1:${ETCD_CLIENT[i] as number}`, '--advertise-client-urls', `http://127.0.0.1:${ETCD_CLIENT[i] as number}`,
        '--listen-peer-urls', `http://127.0.0.1:${ETCD_PEER[i] as number}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${ETCD_PEER[i] as number}`,
        '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `bench-${dir}`, '--logger', 'zap', '--log-outputs', 'stderr'], { stdio: 'ignore' }))
    }
    for (const port of ETCD_CLIENT) {
      await until(`etcd on ${port} healthy`, async () => (await fetch(`http://127.0.0.1:${port}/health`).then(async r => await r.text(), () => '')).includes('"health":"true"'), 60_000, 300)
    }
    for (let i = 0; i < 3; i++) {
      const d = join(dir, `node${i + 1}`)
      mkdirSync(d, { mode: 0o700 })
      writeFileSync(join(d, 'patroni.yml'), patroniConfig(i, d, profile, password, `${password}r`), { mode: 0o600 })
      chownSync(d, postgresUid, postgresGid)
      chownSync(join(d, 'patroni.yml'), postgresUid, postgresGid)
      startPatroni(i)
    }
    const waitReady = async (): Promise<number> => await until('Patroni: one primary streaming to two replicas', async () => {
      const primaries: number[] = []
      for (let i = 0; i < 3; i++) {
        if (await restCode(i, '/primary') !== 200) continue
        const recovery = await query<{ r: boolean }>(PG_PORTS[i] as number, login, 'SELECT pg_is_in_recovery() AS r').then(r => r[0]?.r, () => undefined)
        if (recovery === false) primaries.push(i)
      }
      if (primaries.length !== 1) return undefined
      const leader = primaries[0] as number
      for (let i = 0; i < 3; i++) if (i !== leader && await restCode(i, '/replica') !== 200) return undefined
      const [row] = await query<{ streaming: number, sync: number }>(PG_PORTS[leader] as number, login, "SELECT count(*) FILTER (WHERE state = 'streaming')::int AS streaming, count(*) FILTER (WHERE sync_state IN ('sync', 'quorum'))::int AS sync FROM pg_stat_replication")
      return row?.streaming === 2 && (!profile.synchronous || (row.sync ?? 0) >= 1) ? leader : undefined
    }, 300_000, 500)
    let leader = await waitReady()
    await query(PG_PORTS[leader] as number, login, 'CREATE TABLE ticks (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); CREATE TABLE failover_probe (id bigserial PRIMARY KEY, run int, port int, at timestamptz NOT NULL DEFAULT clock_timestamp())')
    for (let run = 1; run <= RUNS; run++) {
      if (run > 1) leader = await waitReady()
      await sleep(2000)
      const victim = leader
      const m = await measure(run, () => PG_PORTS, login, PG_PORTS[victim] as number, () => withDescendants(nodePids(victim)))
      const newNode = PG_PORTS.indexOf(m.newPort)
      const phases: Record<string, number> = {}
      // Patroni logs when it took the leader key; its pg_ctl promote follows asynchronously.
      const locked = (logs[newNode] ?? []).join('').split('\n').filter(l => l.includes('promoted self to leader by acquiring session lock'))
        .map(l => Date.parse(`${l.slice(0, 23).replace(' ', 'T').replace(',', '.')}Z`)).find(t => t >= m.killedAt)
      if (locked !== undefined) phases.lease = locked - m.killedAt
      results.push(report(system, run, `node${victim + 1} -> node${newNode + 1}`, m, phases))
      await new Promise<void>(resolve => { const p = patroni[victim]; if (p === undefined || p.exitCode !== null || p.signalCode !== null) resolve(); else p.once('exit', () => { resolve() }) })
      startPatroni(victim)
    }
  } finally {
    cleanups.delete(stop)
    await stop()
  }
  return results
}

function patroniConfig (i: number, d: string, p: PatroniProfile, password: string, replicationPassword: string): string {
  const etcdHosts = ETCD_CLIENT.map(c => `127.0.0.1:${c}`).join(',')
  return `scope: bench
namespace: /pgmesh-bench/
name: node${i + 1}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:${REST[i] as number}
  connect_address: 127.0.0.1:${REST[i] as number}
etcd3:
  hosts: ${etcdHosts}
bootstrap:
  dcs:
    ttl: ${p.ttl}
    loop_wait: ${p.loopWait}
    retry_timeout: ${p.retryTimeout}
    maximum_lag_on_failover: 1048576
    synchronous_mode: ${p.synchronous}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
  - encoding: UTF8
  - data-checksums
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 scram-sha-256
  - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:${PG_PORTS[i] as number}
  connect_address: 127.0.0.1:${PG_PORTS[i] as number}
  data_dir: ${d}/data
  bin_dir: ${PG_BIN}
  pgpass: ${d}/pgpass
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
      password: '${password}'
    replication:
      username: replicator
      password: '${replicationPassword}'
  parameters:
    unix_socket_directories: '${d}'
    shared_buffers: 32MB
watchdog:
  mode: 'off'
`
}

// ------------------------------------------------------------------------------------------------ report

function report (system: string, run: number, what: string, m: Omit<RunResult, 'phases'>, phases: Record<string, number>): RunResult {
  const steps = Object.entries(phases).map(([k, v]) => `${k}=${(v / 1000).toFixed(2)}`).join(' ')
  console.log(`${system} run ${run} (${what}): failover ${(m.failoverMs / 1000).toFixed(2)} s, writer gap ${(m.gapMs / 1000).toFixed(2)} s, acknowledged ${m.acked}, lost ${m.lost}, processes gathered in ${m.gatheringMs} ms before the kill${steps === '' ? '' : `; ${steps} s after the kill`}`)
  return { ...m, phases }
}

function median (values: number[]): number {
  const s = values.filter(v => !Number.isNaN(v)).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

if (process.getuid?.() !== 0) throw new Error('run as root: Postgres runs as the postgres user')
const summary = new Map<string, RunResult[]>()
for (const system of SYSTEMS) {
  const profile = PROFILES[system]
  if (system === 'pgmesh') summary.set(system, await benchPgmesh(system))
  else if (system === 'pgmesh-fast') summary.set(system, await benchPgmesh(system, 2000))
  else if (profile !== undefined) summary.set(system, await benchPatroni(system, profile))
  else throw new Error(`unknown system ${system}: pgmesh, pgmesh-fast, ${Object.keys(PROFILES).join(', ')}`)
}
console.log(`\nfailover, kill of the primary's host -> first write accepted by the new primary (${RUNS} runs each, median [min-max]), lost acknowledged rows in all runs:`)
for (const [system, results] of summary) {
  const f = results.map(r => r.failoverMs)
  const phaseNames = [...new Set(results.flatMap(r => Object.keys(r.phases)))]
  const phases = phaseNames.map(k => `${k} ${(median(results.map(r => r.phases[k] ?? Number.NaN)) / 1000).toFixed(2)}`).join(', ')
  console.log(`  ${system.padEnd(18)} ${(median(f) / 1000).toFixed(2)} s [${(Math.min(...f) / 1000).toFixed(2)}-${(Math.max(...f) / 1000).toFixed(2)}], lost ${results.reduce((n, r) => n + r.lost, 0)}${phases === '' ? '' : `; median s after the kill: ${phases}`}`)
}
for (const ours of ['pgmesh', 'pgmesh-fast']) {
  const mine = summary.get(ours)
  if (mine === undefined) continue
  const m = median(mine.map(r => r.failoverMs))
  const ratios = [...summary].filter(([s]) => s.startsWith('patroni')).map(([s, r]) => `${(m / median(r.map(x => x.failoverMs))).toFixed(2)}x ${s}`)
  console.log(`  ${ours}: ${(m / TARGET_MS).toFixed(2)}x the ${TARGET_MS / 1000} s target${ratios.length === 0 ? '' : `; ${ratios.join(', ')}`}`)
}

