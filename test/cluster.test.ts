// The mesh as real daemons: separate processes on loopback, joined by token and by bootstrap multiaddr. These hosts
// are control-only (--reconcile false): what is tested here is the mesh and the desired state, not Postgres.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, hostStates, until } from './helpers/cluster.js'

const spec = (hostId: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ database_name: 'app', nodes: [{ name: 'n1', host_ids: [hostId] }], ...extra })

async function createDatabase (d: DaemonProcess, id: string, hostId = 'host-1'): Promise<void> {
  const res = await d.post('/v1/databases', { id, spec: spec(hostId) })
  if (res.status !== 200) throw new Error(`create ${id} on ${d.hostId}: ${res.status} ${JSON.stringify(res.body)}`)
}

async function hasDatabase (d: DaemonProcess, id: string): Promise<boolean> {
  return (await d.get(`/v1/databases/${id}`)).status === 200
}

describe('a three-host mesh', () => {
  let cluster: TestCluster
  let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess

  beforeAll(async () => {
    cluster = await TestCluster.create('mesh', { reconcile: false })
    h1 = await cluster.add('host-1')
    const init = await h1.get('/v1/cluster/init?cluster_id=mesh')
    expect(init.status).toBe(200)
    h2 = await cluster.add('host-2')
    const joined = await h2.post('/v1/cluster/join', init.body)
    expect(joined.status).toBe(204)
    // host-3 joins by bootstrap multiaddr with the cluster key file instead of a token.
    const { readFile } = await import('node:fs/promises')
    const keyFile = await cluster.writeFile('cluster.key', await readFile(`${h1.options.dataDir}/cluster.key`, 'utf8'))
    // The data key travels beside it (a member's data dir holds both).
    await cluster.writeFile('data.key', await readFile(`${h1.options.dataDir}/data.key`, 'utf8'))
    h3 = await cluster.add('host-3', { bootstrap: [await h1.multiaddr()], clusterKeyFile: keyFile })
    await until('host-3 to join by bootstrap', async () => (await h3.get('/v1/cluster')).status === 200)
  })

  afterAll(async () => { await cluster.destroy() })

  it('lists three healthy hosts on every host, both join paths ending in the same state', async () => {
    for (const d of [h1, h2, h3]) {
      await until(`3 healthy hosts on ${d.hostId}`, async () => {
        const states = await hostStates(d)
        return Object.keys(states).length === 3 && Object.values(states).every(s => s === 'healthy')
      })
    }
    const clusters = await Promise.all([h1, h2, h3].map(async d => (await d.get('/v1/cluster')).body))
    expect(new Set(clusters.map((c: { id: string }) => c.id))).toEqual(new Set(['mesh']))
    await until('identical documents', async () => {
      const heads = await Promise.all([h1, h2, h3].map(async d => JSON.stringify((await d.get('/v1/cluster')).body.document.heads)))
      return new Set(heads).size === 1
    })
  })

  it('refuses a second join of the same host id and a wrong token', async () => {
    const token = (await h1.get('/v1/cluster/join-token')).body
    const again = await h2.post('/v1/cluster/join', token)
    expect(again.status).toBe(409)
    expect(again.body.name).toBe('cluster_already_initialized')
    const stranger = await cluster.add('host-9')
    const bad = await stranger.post('/v1/cluster/join', { ...token, token: token.token.replace(/.$/, (c: string) => c === 'a' ? 'b' : 'a') })
    expect(bad.status).toBe(401)
    expect(bad.body).toEqual({ name: 'invalid_join_token', message: 'the given join token is invalid' })
    expect((await stranger.get('/v1/hosts')).status).toBe(409)
    await stranger.stop()
  })

  it('shows a change written through host 3 on hosts 1 and 2', async () => {
    await createDatabase(h3, 'via-h3', 'host-2')
    for (const d of [h1, h2]) await until(`via-h3 on ${d.hostId}`, async () => await hasDatabase(d, 'via-h3'), 5000, 10)
  })

  it('refuses peers without the cluster key, or with a wrong one', async () => {
    const wrongKey = await cluster.writeFile('wrong.key', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'ab'.repeat(32) + '\n')
    const intruder = await cluster.add('host-7', { bootstrap: [await h1.multiaddr()], clusterKeyFile: wrongKey })
    const keyless = await cluster.add('host-8', { bootstrap: [await h1.multiaddr()] })
    await new Promise(r => setTimeout(r, 3000))
    for (const d of [intruder, keyless]) {
      expect((await d.get('/v1/cluster')).status, d.hostId).toBe(409)
      expect(await hasDatabase(d, 'via-h3')).toBe(false)
    }
    const listed = Object.keys(await hostStates(h1))
    expect(listed).toEqual(['host-1', 'host-2', 'host-3'])
    const metrics = await (await fetch(`${h1.url}/metrics`)).text()
    expect(metrics).toMatch(/^pgmesh_mesh_peers 2$/m)
    // The executable found Automerge's WebAssembly memory (it watches from before Automerge loads).
    expect(Number(/^pgmesh_automerge_memory_bytes (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0)
    await intruder.stop()
    await keyless.stop()
  })

  it('keeps hosts 2 and 3 exchanging changes when the bootstrap host dies, and lets it catch up on restart', async () => {
    await h1.stop('SIGKILL')
    const died = Date.now()
    await createDatabase(h2, 'while-h1-dead', 'host-2')
    await until('the change on host-3', async () => await hasDatabase(h3, 'while-h1-dead'), 5000, 10)
    await until('host-1 unreachable on host-2 and host-3', async () =>
      (await hostStates(h2))['host-1'] === 'unreachable' && (await hostStates(h3))['host-1'] === 'unreachable', 10_000, 100)
    // The anchor marks a host unreachable after 30 s; pgmesh's heartbeats do it in about 5.
    expect(Date.now() - died).toBeLessThan(8000)
    await h1.start()
    await until('host-1 caught up', async () => await hasDatabase(h1, 'while-h1-dead'), 10_000)
    await until('host-1 healthy again on host-3', async () => (await hostStates(h3))['host-1'] === 'healthy', 10_000)
  })
})

describe('durability', () => {
  let cluster: TestCluster
  beforeAll(async () => { cluster = await TestCluster.create('durable', { reconcile: false }) })
  afterAll(async () => { await cluster.destroy() })

  it('keeps every acknowledged write across kill -9 in the middle of a burst', async () => {
    const [h1] = await cluster.initAndJoin(1)
    if (h1 === undefined) throw new Error('no host')
    const acknowledged: string[] = []
    let attempted = 0
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; ; i++) {
        const id = `burst-${w}-${i}`
        attempted++
        try {
          const res = await h1.post('/v1/databases', { id, spec: spec('host-1') })
          if (res.status === 200) acknowledged.push(id)
        } catch {
          return
        }
      }
    })
    await until('some acknowledged writes', () => acknowledged.length >= 60, 20_000, 5)
    await h1.stop('SIGKILL')
    await Promise.all(writers)
    expect(attempted).toBeGreaterThan(acknowledged.length)
    // Alone, so nothing can come back from a peer: everything must be in its own data dir.
    await h1.start()
    const listed = new Set(((await h1.get('/v1/databases')).body.databases as Array<{ id: string }>).map(d => d.id))
    const missing = acknowledged.filter(id => !listed.has(id))
    expect(missing).toEqual([])
  })
})
