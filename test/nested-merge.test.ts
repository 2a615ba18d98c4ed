// Issue 17 §5 on real daemons: two hosts, each cut off, add different keys to a nested map the database did not have
// (postgresql_conf, and orchestrator_opts.swarm.extra_labels three levels down). After they reconnect every host shows
// both sides' keys, reports a conflict only for a key both set to different values, and the history's diff agrees.
// Cut off the way test/partition.test.ts does it: the other side's daemons are down while one side writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import { heads, ok, updateSpec } from './helpers/specs.js'


async function converged (hosts: DaemonProcess[]): Promise<void> {
  await until('identical documents on all hosts', async () => new Set(await Promise.all(hosts.map(heads))).size === 1, 30_000, 100)
}

describe('nested maps created on both sides of a partition', () => {
  let cluster: TestCluster
  let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess
  /** The last change before the partition: diffs from here show what the two sides did. */
  let before: string

  beforeAll(async () => {
    cluster = await TestCluster.create('nested-merge', { reconcile: false })
    ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
    const base = (port: number): unknown => ({ database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'], port }] })
    await ok(h1.post('/v1/databases', { id: 'nested', spec: base(5501) }), 'create nested')
    await ok(h1.post('/v1/databases', { id: 'clash', spec: base(5502) }), 'create clash')
    await converged([h1, h2, h3])
    const history = await ok(h1.get('/v1/databases/nested/history'), 'history')
    before = history.changes.at(-1).version

    // Host 1 cut off (the others down): it creates postgresql_conf and orchestrator_opts with its keys.
    await h2.stop()
    await h3.stop()
    await updateSpec(h1, 'nested', s => {
      s.postgresql_conf = { work_mem: '8MB' }
      s.orchestrator_opts = { swarm: { extra_labels: { team: 'db' } } }
    })
    await updateSpec(h1, 'clash', s => { s.postgresql_conf = { work_mem: '8MB', max_connections: 200 } })
    await h1.stop()

    // Host 3 cut off, from its own data dir: the same maps, other keys (and, in clash, one key with another value).
    await h3.start()
    await updateSpec(h3, 'nested', s => {
      s.postgresql_conf = { max_connections: 300 }
      s.orchestrator_opts = { swarm: { extra_labels: { tier: 'gold' } } }
    })
    await updateSpec(h3, 'clash', s => { s.postgresql_conf = { work_mem: '16MB', shared_buffers: '256MB' } })

    await Promise.all([h1.start(), h2.start()])
    await converged([h1, h2, h3])
  }, 180_000)

  afterAll(async () => { await cluster?.destroy() })

  it('merges the maps key by key on every host, without a conflict', async () => {
    for (const d of [h1, h2, h3]) {
      const db = await ok(d.get('/v1/databases/nested'), 'get nested')
      expect(db.spec.postgresql_conf, d.hostId).toEqual({ work_mem: '8MB', max_connections: 300 })
      expect(db.spec.orchestrator_opts, d.hostId).toEqual({ swarm: { extra_labels: { team: 'db', tier: 'gold' } } })
      expect(db.conflicts, d.hostId).toBeUndefined()
      expect(db.spec_errors, d.hostId).toBeUndefined()
    }
  })

  it('reports a conflict only for the key both sides set to different values', async () => {
    const views = await Promise.all([h1, h2, h3].map(async d => await ok(d.get('/v1/databases/clash'), 'get clash')))
    for (const v of views) {
      expect(v).toEqual(views[0])
      expect(v.conflicts).toHaveLength(1)
      expect(v.conflicts[0].path).toBe('spec.postgresql_conf.work_mem')
      expect([...v.conflicts[0].values].sort()).toEqual(['16MB', '8MB'])
      expect([...v.conflicts[0].hosts].sort()).toEqual(['host-1', 'host-3'])
      expect(v.spec.postgresql_conf).toEqual({ work_mem: v.conflicts[0].values[0], max_connections: 200, shared_buffers: '256MB' })
    }
  })

  it('diffs the history the way GET shows the merged spec', async () => {
    for (const d of [h1, h3]) {
      const { diff } = await ok(d.get(`/v1/databases/nested/history?from=${before}`), 'diff')
      const spec = (diff as Array<{ path: string, action: string, after?: unknown }>).filter(e => e.path.startsWith('spec.'))
      // The maps did not exist before: each is one entry holding both sides' keys, as GET shows them.
      expect(spec, d.hostId).toEqual(expect.arrayContaining([
        { path: 'spec.postgresql_conf', action: 'set', after: { work_mem: '8MB', max_connections: 300 } },
        { path: 'spec.orchestrator_opts', action: 'set', after: { swarm: { extra_labels: { team: 'db', tier: 'gold' } } } }
      ]))
    }
  })

  it('keeps every merged key through the next update, which settles the clash', async () => {
    await updateSpec(h2, 'nested', s => { s.postgresql_conf.shared_buffers = '128MB' })
    const clash = await ok(h2.get('/v1/databases/clash'), 'get clash')
    await updateSpec(h2, 'clash', s => { s.postgresql_conf.work_mem = clash.spec.postgresql_conf.work_mem })
    await converged([h1, h2, h3])
    for (const d of [h1, h2, h3]) {
      const nested = await ok(d.get('/v1/databases/nested'), 'get nested')
      expect(nested.spec.postgresql_conf, d.hostId).toEqual({ work_mem: '8MB', max_connections: 300, shared_buffers: '128MB' })
      expect(nested.spec.orchestrator_opts.swarm.extra_labels, d.hostId).toEqual({ team: 'db', tier: 'gold' })
      const settled = await ok(d.get('/v1/databases/clash'), 'get clash')
      expect(settled.conflicts, d.hostId).toBeUndefined()
      expect(Object.keys(settled.spec.postgresql_conf).sort(), d.hostId).toEqual(['max_connections', 'shared_buffers', 'work_mem'])
    }
  })
})
