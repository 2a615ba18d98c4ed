// A package upgrade of the minor version on process hosts (real daemons, real Postgres): once the installed binary
// is newer than the running servers, POST …?force_update=true restarts each instance in its turn of the rolling
// restart, while a client on every node writes every 25 ms. A real `apt-get install` cannot run here, so the hosts
// run from a PostgreSQL root whose `postgres --version` says what a file says (every other call, and every other
// binary, is the real Debian one): the control plane asks the binary exactly that way.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import { NodeProbe, overlappingOutages } from './helpers/probes.js'
import { ok } from './helpers/specs.js'

const REAL = '/usr/lib/postgresql/15'
const PASSWORD = 'minor-password'
const LOGIN = { user: 'admin', password: PASSWORD, database: 'minor' }
const realVersion = execFileSync(join(REAL, 'bin', 'postgres'), ['--version'], { encoding: 'utf8' }).trim()
const realMinor = /\(PostgreSQL\) (\d+\.\d+)/.exec(realVersion)?.[1] as string

interface Instance { id: string, node_name: string, host_id: string, state: string, connection_info?: { addresses: string[], port: number }, postgres?: { version?: string, role?: string } }

let cluster: TestCluster | undefined
let root: string

/** `<root>/15/{bin,lib}`: the real binaries and libraries, but `postgres --version` prints `<root>/version`. */
function fakeRoot (): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgmesh-pgroot-'))
  chmodSync(dir, 0o755)
  mkdirSync(join(dir, '15', 'bin'), { recursive: true, mode: 0o755 })
  symlinkSync(join(REAL, 'lib'), join(dir, '15', 'lib'))
  for (const name of readdirSync(join(REAL, 'bin'))) if (name !== 'postgres') symlinkSync(join(REAL, 'bin', name), join(dir, '15', 'bin', name))
  writeFileSync(join(dir, '15', 'bin', 'postgres'), `#!/bin/sh\nif [ "$1" = --version ]; then cat ${dir}/version; exit 0; fi\nexec ${REAL}/bin/postgres "$@"\n`, { mode: 0o755 })
  writeFileSync(join(dir, 'version'), `${realVersion}\n`, { mode: 0o644 })
  return dir
}

async function database (d: DaemonProcess): Promise<{ spec: Record<string, unknown>, instances: Instance[] }> {
  return await ok(d.get('/v1/databases/minor'), 'get minor')
}

async function startTime (instance: Instance | undefined): Promise<number> {
  const info = instance?.connection_info
  if (info === undefined) throw new Error('no connection info')
  const client = new pg.Client({ host: info.addresses[0], port: info.port, ...LOGIN, connectionTimeoutMillis: 3000 })
  await client.connect()
  try {
    return Date.parse((await client.query('SELECT pg_postmaster_start_time()::text AS t')).rows[0].t as string)
  } finally {
    await client.end()
  }
}

describe('a minor-version package upgrade on process hosts', () => {
  let hosts: DaemonProcess[]

  beforeAll(async () => {
    root = fakeRoot()
    cluster = await TestCluster.create('minor-upgrade')
    hosts = await cluster.initAndJoin(2, () => ({ args: ['--postgres-root', root] }))
    const [h1] = hosts as [DaemonProcess]
    const created = await ok(h1.post('/v1/databases', {
      id: 'minor',
      spec: {
        database_name: 'minor',
        database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }]
      }
    }), 'create minor')
    await until('minor available', async () => (await h1.get(`/v1/databases/minor/tasks/${created.task.task_id as string}`)).body.status === 'completed', 120_000, 250)
    const n1 = (await database(h1)).instances.find(i => i.node_name === 'n1') as Instance
    const client = new pg.Client({ host: n1.connection_info?.addresses[0], port: n1.connection_info?.port, ...LOGIN })
    await client.connect()
    await client.query('CREATE TABLE probe (id text PRIMARY KEY, node text)')
    await client.end()
    for (const i of (await database(h1)).instances) {
      await until(`the table on ${i.node_name}`, async () => {
        const c = new pg.Client({ host: i.connection_info?.addresses[0], port: i.connection_info?.port, ...LOGIN })
        await c.connect()
        try {
          return (await c.query("SELECT to_regclass('public.probe')::text AS t")).rows[0].t === 'probe'
        } finally {
          await c.end()
        }
      }, 30_000, 200)
    }
  }, 300_000)

  afterEach((context) => {
    if (context.task.result?.state === 'fail') console.log(cluster?.problems())
  })

  afterAll(async () => {
    await cluster?.destroy()
    rmSync(root, { recursive: true, force: true })
  }, 120_000)

  it('restarts each instance in its turn on force_update once the binaries are newer, never both nodes at once', { timeout: 300_000 }, async () => {
    const [h1] = hosts as [DaemonProcess]
    const before = await database(h1)
    expect(before.instances.map(i => i.postgres?.version)).toEqual([realMinor, realMinor])
    const started = await Promise.all(['n1', 'n2'].map(async n => await startTime(before.instances.find(i => i.node_name === n))))

    // An update that changes nothing restarts nothing while the binaries are what the servers run.
    const unchanged = await ok(h1.post('/v1/databases/minor?force_update=true', { spec: before.spec }), 'force_update before the upgrade')
    await until('first force_update done', async () => (await h1.get(`/v1/databases/minor/tasks/${unchanged.task.task_id as string}`)).body.status === 'completed', 120_000, 250)
    expect(await Promise.all(['n1', 'n2'].map(async n => await startTime(before.instances.find(i => i.node_name === n))))).toEqual(started)

    // The "package upgrade": the binary now says 15.99. The hosts report it as what they provide.
    writeFileSync(join(root, 'version'), 'postgres (PostgreSQL) 15.99 (Debian 15.99-0+deb12u1)\n')
    const probes = ['n1', 'n2'].map(node => new NodeProbe(h1, 'minor', node, LOGIN, 'probe'))
    for (const p of probes) p.start()
    await until('probes writing', () => probes.every(p => p.acknowledged.length > 5), 20_000, 100)
    const res = await ok(h1.post('/v1/databases/minor?force_update=true', { spec: before.spec }), 'force_update after the upgrade')
    await until('upgrade force_update done', async () => (await h1.get(`/v1/databases/minor/tasks/${res.task.task_id as string}`)).body.status === 'completed', 240_000, 250)
    const restarted = await until('both instances restarted and available', async () => {
      const now = await database(h1)
      if (!now.instances.every(i => i.state === 'available')) return undefined
      const times = await Promise.all(['n1', 'n2'].map(async n => await startTime(now.instances.find(i => i.node_name === n))))
      return times.every((t, i) => t !== started[i]) ? times : undefined
    }, 120_000, 500)
    await new Promise(resolve => setTimeout(resolve, 1000))
    for (const p of probes) await p.stop()

    // n1 first (the spec's order), n2 only after it: the clients never lost both nodes at once.
    expect(restarted[1]).toBeGreaterThan(restarted[0] as number)
    expect(overlappingOutages(probes.flatMap(p => p.outages))).toEqual([])
    console.log(`minor upgrade by force_update: longest write outage per node ${probes.map(p => `${p.node} ${p.longestMs()} ms`).join(', ')}`)
    // Instances report their servers' own version (the real binary here), hosts what their binaries say.
    expect((await database(h1)).instances.map(i => i.postgres?.version)).toEqual([realMinor, realMinor])
    const host = await until('host-1 reports 15.99', async () => {
      const h = (await h1.get('/v1/hosts/host-1')).body
      return (h.supported_pgedge_versions as Array<{ postgres_version: string }> | undefined)?.some(v => v.postgres_version === '15.99') === true ? h : undefined
    }, 40_000, 1000)
    expect(host.supported_pgedge_versions).toEqual([{ postgres_version: '15.99' }])
  })
})
