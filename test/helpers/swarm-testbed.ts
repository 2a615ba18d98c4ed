import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { type DaemonProcess, TestCluster } from './cluster.js'

const execFileAsync = promisify(execFile)
const SCRIPTS = resolve(import.meta.dirname, '../../scripts/testbed')
export const IMAGE = 'pgmesh/postgres:15'

async function run (file: string, args: string[], timeoutMs = 300_000, env: Record<string, string> = {}): Promise<string> {
  try {
    return (await execFileAsync(file, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, ...env } })).stdout
  } catch (err) {
    const e = err as { stderr?: string, message: string }
    throw new Error(`${file} ${args.join(' ')} failed: ${e.stderr?.trim() ?? ''} ${e.message}`)
  }
}

export async function tb (...args: string[]): Promise<string> {
  return await run(`${SCRIPTS}/tb.sh`, args)
}

/** Testbed host `host`'s docker CLI, its output trimmed. */
export async function docker (host: number, ...args: string[]): Promise<string> {
  return (await tb('docker', String(host), ...args)).trim()
}

/** What connectNode needs of a database's API view. */
export interface NodeView { instances: Array<{ node_name: string, connection_info?: { addresses: string[], port: number } }> }
export interface Login { user: string, password?: string | undefined, database: string }

/** A session on a node's instance at its listed client address, from the root namespace (a password is required). */
export async function connectNode (db: NodeView, node: string, login: Login): Promise<pg.Client> {
  const info = db.instances.find(i => i.node_name === node)?.connection_info
  if (info === undefined) throw new Error(`no connection info for ${node}`)
  const client = new pg.Client({ host: info.addresses[0], port: info.port, ...login, connectionTimeoutMillis: 3000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

/** One query on a session of its own (connectNode). */
export async function queryNode (db: NodeView, node: string, login: Login, sql: string, values: unknown[] = []): Promise<any[]> {
  const c = await connectNode(db, node, login)
  try {
    return (await c.query(sql, values)).rows
  } finally {
    await c.end().catch(() => {})
  }
}

export function hostAddress (i: number): string {
  return `10.99.0.${10 + i}`
}

export function dockerSocket (i: number): string {
  return `/run/tb/tbh${i}/docker.sock`
}

/** The hosts and their dockerds only (no pgmesh daemons), one swarm, the Postgres image in every host. */
export async function startDockerTestbed (count: number, managers: number): Promise<void> {
  for (const tool of ['docker', 'dockerd', 'mmdebstrap']) {
    await run('sh', ['-c', `command -v ${tool}`]).catch(() => { throw new Error(`${tool} is not installed (scripts/install-deps.sh installs it)`) })
  }
  await tb('down')
  const rootfs = (await run(`${SCRIPTS}/build-postgres-image.sh`, [], 600_000)).trim()
  await tb('up', String(count), String(managers))
  await tb('import-image', rootfs, IMAGE)
}

/**
 * The version manifest's two testbed tags (packages/model/src/manifest.ts): Debian bookworm's final point release,
 * and a rebuild with bookworm-security's newer minor and one more package (procps). The build refuses a tag whose
 * minor is not the one in its name.
 */
export const UPGRADE_IMAGES = {
  from: { tag: 'pgmesh/postgres:15.18', minor: '15.18', env: { SUITES: 'point', EXPECT_MINOR: '15.18' } },
  to: { tag: 'pgmesh/postgres:15.20', minor: '15.20', env: { EXTRA_PACKAGES: 'procps', EXPECT_MINOR: '15.20' } }
} as const

/** Builds (cached) one variant of the offline image and imports it into every testbed host as `tag`. */
export async function importImageVariant (image: { tag: string, env: Readonly<Record<string, string>> }): Promise<void> {
  const rootfs = (await run(`${SCRIPTS}/build-postgres-image.sh`, [], 600_000, { ...image.env })).trim()
  await tb('import-image', rootfs, image.tag)
}

/**
 * The swarm testbed (scripts/testbed/tb.sh): `count` hosts, each a network namespace with its own dockerd, the
 * first `managers` of them swarm managers, the Postgres image (built offline, cached) imported into every one,
 * and a pgmesh daemon with the swarm orchestrator inside each host's namespace.
 */
export async function startSwarmTestbed (name: string, count: number, managers: number): Promise<{ cluster: TestCluster, hosts: DaemonProcess[] }> {
  await startDockerTestbed(count, managers)
  const cluster = await TestCluster.create(name)
  const hosts: DaemonProcess[] = []
  for (let i = 1; i <= count; i++) {
    hosts.push(await cluster.add(`host-${i}`, {
      netns: `tbh${i}`, address: hostAddress(i), httpPort: 3000, p2pPort: 3100, logLevel: process.env.PGMESH_TEST_LOG_LEVEL ?? 'info',
      ...(process.env.PGMESH_TEST_LOG_DIR === undefined ? {} : { logFile: `${process.env.PGMESH_TEST_LOG_DIR}/host-${i}.log` }),
      args: ['--orchestrator', 'swarm', '--docker-host', dockerSocket(i), '--postgres-image', IMAGE]
    }))
  }
  const first = hosts[0] as DaemonProcess
  const init = await first.get<{ token: string, server_urls: string[] }>('/v1/cluster/init?cluster_id=swarm')
  if (init.status !== 200) throw new Error(`init failed: ${JSON.stringify(init.body)}`)
  for (const h of hosts.slice(1)) {
    const res = await h.post('/v1/cluster/join', init.body)
    if (res.status !== 204) throw new Error(`join of ${h.hostId} failed: ${res.status} ${JSON.stringify(res.body)}`)
  }
  return { cluster, hosts }
}

/**
 * The control plane's superuser on a swarm instance, over the unix socket in its bind mount on its host (over TCP
 * only peers may be it, and the test's namespace is none).
 */
export async function instanceAdmin (daemon: DaemonProcess, instance: { id: string, connection_info?: { port: number } }, database: string): Promise<pg.Client> {
  const client = new pg.Client({ host: `${daemon.options.dataDir}/instances/${instance.id}/run`, port: instance.connection_info?.port, user: 'pgmesh', database })
  client.on('error', () => {})
  await client.connect()
  return client
}

/** Stops the daemons and takes the testbed down; returns what was left behind (all empty when clean). */
export async function stopSwarmTestbed (cluster: TestCluster | undefined): Promise<Record<string, string[]>> {
  // The daemons first, then the testbed (its dockerds take the containers with them), and only then the files: a
  // Postgres still running in a container writes into the data dirs being removed.
  await Promise.all((cluster?.daemons ?? []).map(async d => { await d.stop('SIGKILL') }))
  await tb('down')
  await cluster?.destroy()
  return await testbedLeftovers()
}

/** What a testbed could leave behind; all empty after `tb.sh down`. */
export async function testbedLeftovers (): Promise<Record<string, string[]>> {
  const netns = (await run('ip', ['netns', 'list'])).split('\n').map(l => l.split(' ')[0] ?? '').filter(n => /^tb(sw|h\d+)$/.test(n))
  const dockerds = readdirSync('/proc').filter(pid => /^\d+$/.test(pid)).flatMap(pid => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      return argv[0]?.endsWith('dockerd') === true && argv.some(a => a.includes('/run/tb/')) ? [`${pid} ${argv.join(' ')}`] : []
    } catch {
      return []
    }
  })
  const cgroups = readdirSync('/sys/fs/cgroup').flatMap(controller => {
    try {
      return readdirSync(`/sys/fs/cgroup/${controller}`).filter(d => /^tbh\d+$/.test(d)).map(d => `${controller}/${d}`)
    } catch {
      return []
    }
  })
  const paths = ['/run/tb', '/var/tmp/pgmesh-testbed/hosts'].filter(p => existsSync(p))
  return { netns, dockerds, cgroups, paths }
}
