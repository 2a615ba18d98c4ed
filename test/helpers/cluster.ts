import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createWriteStream, readFileSync, readdirSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { get as httpsGet } from 'node:https'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'

// The bundled executable users run (`npm run build` makes it), not dist/main.js.
const MAIN = resolve(import.meta.dirname, '../../cmd/pgmesh/bin/pgmesh.mjs')
/** The Node flags of the bin's shebang: a daemon started as `node <bin>` runs as the installed `pgmesh` does. */
export const DAEMON_NODE_FLAGS = (readFileSync(MAIN, 'utf8').split('\n', 1)[0] ?? '').split(' ').filter(a => a.startsWith('--'))

/**
 * The control plane's superuser password, as every host of the cluster derives it from the data key in its data dir
 * (instances admit `pgmesh` over TCP only with it).
 */
export async function superuserPassword (dataDir: string): Promise<string> {
  const { DataKey } = await import('@pgmesh/cluster')
  return (await DataKey.load(join(dataDir, 'data.key'))).superuserPassword()
}

/** A free TCP port on loopback (bound and released; good enough for tests on one machine). */
export async function freePort (): Promise<number> {
  return await new Promise((res, rej) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', rej)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => { res(typeof address === 'object' && address !== null ? address.port : 0) })
    })
  })
}

export async function until<T> (what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : ` (last error: ${(lastError as Error).message})`}`)
    await new Promise(r => setTimeout(r, everyMs))
  }
}

export interface JsonResponse<T = any> { status: number, body: T, headers: Headers }

export interface DaemonOptions {
  hostId: string
  dataDir: string
  httpPort: number
  p2pPort: number
  bootstrap?: string[]
  clusterKeyFile?: string
  env?: Record<string, string>
  /** Write the daemon's log to this file instead of keeping it in memory. */
  logFile?: string
  logLevel?: string
  /** false: a control-only host, for tests of the desired state alone (no Postgres started). */
  reconcile?: boolean
  /** Run inside this network namespace (`ip netns exec`), e.g. a testbed host of its own. */
  netns?: string
  /** The address HTTP and libp2p listen on; default 127.0.0.1. */
  address?: string
  /** More `pgmesh run` arguments. */
  args?: string[]
  /** The API is served over HTTPS (`--tls auto` or certificates in `args`): readiness is polled over https. */
  https?: boolean
  /** How long start() waits for /readyz; 20 s by default (benches of many daemons on a busy machine wait longer). */
  readyTimeoutMs?: number
}

/** One `pgmesh run` as a separate OS process on loopback. */
export class DaemonProcess {
  private child: ChildProcess | undefined
  private exited: Promise<void> | undefined
  output = ''

  constructor (readonly options: DaemonOptions) {}

  get url (): string { return `${this.options.https === true ? 'https' : 'http'}://${this.options.address ?? '127.0.0.1'}:${this.options.httpPort}` }
  get hostId (): string { return this.options.hostId }
  /** The cluster's superuser password (from this host's data key). */
  async superuserPassword (): Promise<string> { return await superuserPassword(this.options.dataDir) }
  /** The daemon's OS process id while it runs. */
  get pid (): number | undefined { return this.running ? this.child?.pid : undefined }

  /** `waitReady: false` for a daemon the test process cannot reach (a host cut off in its network namespace). */
  async start (waitReady = true): Promise<void> {
    const o = this.options
    const address = o.address ?? '127.0.0.1'
    // PGMESH_DAEMON_NODE_ARGS: Node options for every daemon (say `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile a bench).
    const nodeArgs = (process.env.PGMESH_DAEMON_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
    // PGMESH_DAEMON_BIN: another build's bundle (a bench comparing two builds on one data dir), read at each start.
    const args = [...DAEMON_NODE_FLAGS, ...nodeArgs, process.env.PGMESH_DAEMON_BIN ?? MAIN, 'run', '--host-id', o.hostId, '--data-dir', o.dataDir, '--http-address', address, '--http-port', String(o.httpPort),
      '--listen', `/ip4/${address}/tcp/${o.p2pPort}`, '--log-level', o.logLevel ?? 'debug', ...(o.args ?? [])]
    // Hosts in network namespaces listen on non-loopback addresses: plain HTTP there must be asked for.
    if (!address.startsWith('127.') && o.https !== true) args.push('--insecure-http')
    if (o.bootstrap !== undefined && o.bootstrap.length > 0) args.push('--bootstrap', o.bootstrap.join(','))
    if (o.clusterKeyFile !== undefined) args.push('--cluster-key', o.clusterKeyFile)
    if (o.reconcile === false) args.push('--reconcile', 'false')
    // `ip netns exec` execs the command, so the child is the daemon itself (signals reach it).
    const [file, argv] = o.netns === undefined ? [process.execPath, args] : ['ip', ['netns', 'exec', o.netns, process.execPath, ...args]]
    const child = spawn(file, argv, { env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    this.output = ''
    if (o.logFile !== undefined) {
      const log = createWriteStream(o.logFile, { flags: 'a' })
      child.stdout?.pipe(log)
      child.stderr?.pipe(log)
    } else {
      child.stdout?.on('data', (d: Buffer) => { this.output += d.toString() })
      child.stderr?.on('data', (d: Buffer) => { this.output += d.toString() })
    }
    this.exited = new Promise(res => { child.once('exit', () => { res() }) })
    if (!waitReady) return
    await until(`${o.hostId} to answer /readyz`, async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${o.hostId} exited: ${this.output.slice(-2000)}`)
      if (o.https === true) return await readyOverHttps(`${this.url}/readyz`)
      const res = await fetch(`${this.url}/readyz`).catch(() => undefined)
      return res?.status === 200
    }, o.readyTimeoutMs ?? 20_000, 50)
  }

  get running (): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** SIGTERM (graceful) or SIGKILL, and wait for the exit. */
  async stop (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.running) return
    this.child?.kill(signal)
    await this.exited
  }

  async request<T = any> (method: string, path: string, body?: unknown, rawBody?: string, timeoutMs = 30_000): Promise<JsonResponse<T>> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: body !== undefined || rawBody !== undefined ? { 'content-type': 'application/json' } : {},
      body: rawBody ?? (body === undefined ? undefined : JSON.stringify(body)),
      signal: AbortSignal.timeout(timeoutMs)
    })
    const text = await res.text()
    let parsed: unknown = text
    try { parsed = text === '' ? undefined : JSON.parse(text) } catch { /* not JSON */ }
    return { status: res.status, body: parsed as T, headers: res.headers }
  }

  async get<T = any> (path: string): Promise<JsonResponse<T>> { return await this.request<T>('GET', path) }
  async post<T = any> (path: string, body?: unknown, timeoutMs?: number): Promise<JsonResponse<T>> { return await this.request<T>('POST', path, body, undefined, timeoutMs) }

  /** This host's libp2p multiaddr as the cluster knows it. */
  async multiaddr (): Promise<string> {
    const res = await this.get<{ peer_addresses: string[] }>(`/v1/hosts/${this.hostId}`)
    const address = res.body.peer_addresses[0]
    if (address === undefined) throw new Error(`${this.hostId} has no peer address`)
    return address
  }
}

/** /readyz over https, without verifying the server (it is public, and says only whether the daemon runs). */
async function readyOverHttps (url: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const req = httpsGet(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode === 200) })
    req.on('error', () => { resolve(false) })
    req.on('timeout', () => { req.destroy() })
  })
}

/** A set of daemons with their own temp dirs and ports, torn down together. */
export class TestCluster {
  readonly daemons: DaemonProcess[] = []
  private constructor (readonly root: string, private readonly defaults: Partial<DaemonOptions>) {}

  static async create (name: string, defaults: Partial<DaemonOptions> = {}): Promise<TestCluster> {
    const root = await mkdtemp(join(tmpdir(), `pgmesh-${name}-`))
    // Postgres runs as its own OS user and must be able to reach the instance dirs below.
    await chmod(root, 0o755)
    return new TestCluster(root, defaults)
  }

  async add (hostId: string, extra: Partial<DaemonOptions> = {}): Promise<DaemonProcess> {
    const daemon = new DaemonProcess({
      hostId, dataDir: join(this.root, hostId), httpPort: await freePort(), p2pPort: await freePort(), ...this.defaults, ...extra
    })
    this.daemons.push(daemon)
    await daemon.start()
    return daemon
  }

  /** host-1 inits, then each further host joins with the token; `perHost` adds options by host number. */
  async initAndJoin (count: number, perHost: (i: number) => Partial<DaemonOptions> = () => ({})): Promise<DaemonProcess[]> {
    const first = await this.add('host-1', perHost(1))
    const init = await first.get<{ token: string, server_urls: string[] }>('/v1/cluster/init?cluster_id=test')
    if (init.status !== 200) throw new Error(`init failed: ${JSON.stringify(init.body)}`)
    for (let i = 2; i <= count; i++) {
      const d = await this.add(`host-${i}`, perHost(i))
      const res = await d.post('/v1/cluster/join', init.body)
      if (res.status !== 204) throw new Error(`join of host-${i} failed: ${res.status} ${JSON.stringify(res.body)}`)
    }
    return this.daemons
  }

  async writeFile (name: string, content: string): Promise<string> {
    const file = join(this.root, name)
    await writeFile(file, content)
    return file
  }

  /** `graceful`: SIGTERM first (a daemon writes a --cpu-prof profile, PGMESH_DAEMON_NODE_ARGS, only on a clean exit). */
  async destroy (options: { graceful?: boolean } = {}): Promise<void> {
    if (options.graceful === true) await Promise.all(this.daemons.map(async d => { await d.stop('SIGTERM') }))
    await Promise.all(this.daemons.map(async d => { await d.stop('SIGKILL') }))
    // Postgres instances outlive their daemon on purpose; the test's own go with its temp dir, whole process groups
    // at once: a postmaster killed alone leaves its backends and walsenders running for a while, into the next file.
    await killProcessGroupsOf(this.root)
    await rm(this.root, { recursive: true, force: true })
  }

  /** The warnings and errors every daemon and every Postgres logged, to explain a failing test. */
  problems (): string {
    const out: string[] = []
    for (const d of this.daemons) {
      // Warnings and errors, and anything that is not a log line at all (a crash's stack trace).
      const lines = d.output.split('\n').filter(l => /"level":(40|50|60)/.test(l) || (l.trim() !== '' && !l.startsWith('{')))
      out.push(`--- ${d.hostId}${d.running ? '' : ' (not running)'}`, ...lines.slice(-15).map(l => l.slice(0, 600)))
      let instances: string[] = []
      try { instances = readdirSync(join(d.options.dataDir, 'instances')) } catch { /* none */ }
      for (const instance of instances) {
        // A process instance logs to log/, a swarm instance to data/log/ (its bind mount).
        const logDirs = ['log', 'data/log'].map(dir => join(d.options.dataDir, 'instances', instance, dir))
        const files: string[] = []
        for (const dir of logDirs) {
          // The .json files (jsonlog) repeat the .log files' lines.
          try { files.push(...readdirSync(dir).filter(f => !f.endsWith('.json')).map(f => join(dir, f))) } catch { /* none */ }
        }
        for (const file of files) {
          const lines = readFileSync(file, 'utf8').split('\n').filter(l => /ERROR|FATAL|PANIC/.test(l)).slice(-8)
          if (lines.length > 0) out.push(`--- ${instance}/${file.split('/').pop() ?? ''}`, ...lines.map(l => l.slice(0, 400)))
        }
      }
    }
    return out.join('\n')
  }

  /** Prints each daemon's log tail; call from a failing test. */
  dump (): string {
    return this.daemons.map(d => `--- ${d.hostId}\n${d.output.split('\n').slice(-40).join('\n')}`).join('\n')
  }
}

export async function hostStates (d: DaemonProcess): Promise<Record<string, string>> {
  const res = await d.get<{ hosts: Array<{ id: string, status: { state: string } }> }>('/v1/hosts')
  if (res.status !== 200) throw new Error(`GET /v1/hosts on ${d.hostId}: ${res.status}`)
  return Object.fromEntries(res.body.hosts.map(h => [h.id, h.status.state]))
}

/** Waits until every daemon lists all of them among its hosts. */
export async function untilEveryHostKnowsEvery (daemons: readonly DaemonProcess[], timeoutMs = 20_000): Promise<void> {
  await until('every host to know every other', async () => {
    for (const d of daemons) if ((await d.get<{ hosts: unknown[] }>('/v1/hosts')).body.hosts.length !== daemons.length) return false
    return true
  }, timeoutMs)
}

/** SIGKILLs the process group of every process whose command line names `path`, and waits until none is left. */
export async function killProcessGroupsOf (path: string): Promise<void> {
  const pids = async (): Promise<number[]> => {
    const out = await promisify(execFile)('pgrep', ['-f', path]).catch(() => ({ stdout: '' }))
    return out.stdout.split('\n').map(Number).filter(pid => pid > 0)
  }
  const deadline = Date.now() + 10_000
  for (let left = await pids(); left.length > 0 && Date.now() < deadline; left = await pids()) {
    for (const pid of left) {
      // A postmaster leads its own group (the orchestrator starts it detached); its children are in it.
      try { process.kill(-pid, 'SIGKILL') } catch { try { process.kill(pid, 'SIGKILL') } catch { /* gone */ } }
    }
    await new Promise(r => setTimeout(r, 100))
  }
}

interface ListedInstance { node_name: string, host_id: string, connection_info?: { addresses: string[], port: number } }

/** Runs `text` on the instance of `databaseId` that `which` picks, as a user of the database's spec. */
export async function queryInstance<T = any> (
  d: DaemonProcess, databaseId: string, which: (i: ListedInstance) => boolean, login: { user: string, password: string }, text: string
): Promise<T[]> {
  const instances = (await d.get<{ instances: ListedInstance[] }>(`/v1/databases/${databaseId}`)).body.instances
  const info = instances.find(which)?.connection_info
  if (info === undefined) throw new Error(`no such instance of ${databaseId}`)
  const client = new pg.Client({ host: info.addresses[0], port: info.port, ...login, database: databaseId })
  client.on('error', () => {})
  await client.connect()
  try {
    return (await client.query(text)).rows as T[]
  } finally {
    await client.end().catch(() => {})
  }
}

/** The change-to-visible latencies (ms) a daemon's log records for remote changes whose entity starts with `entityPrefix`. */
export function remoteChangeLatencies (log: string, entityPrefix: string): number[] {
  const out: number[] = []
  for (const line of log.split('\n')) {
    if (!line.includes('remote change applied') || !line.includes(entityPrefix)) continue
    try {
      const rec = JSON.parse(line) as { latency_ms?: number, entity?: string }
      if (typeof rec.latency_ms === 'number' && rec.entity?.startsWith(entityPrefix) === true) out.push(rec.latency_ms)
    } catch { /* not a log line */ }
  }
  return out
}
