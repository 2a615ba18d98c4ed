// Writes on both sides of a partition, then heal: the merge rules of concurrent database edits, on real daemons.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'
import { heads, ok, updateSpec } from './helpers/specs.js'


describe('edits on both sides of a partition', () => {
  let cluster: TestCluster
  let h1: DaemonProcess, h2: DaemonProcess, h3: DaemonProcess

  beforeAll(async () => {
    cluster = await TestCluster.create('partition', { reconcile: false })
    ;[h1, h2, h3] = await cluster.initAndJoin(3) as [DaemonProcess, DaemonProcess, DaemonProcess]
    // Each its own ports: a port another database has on the host is refused.
    const base = (port: number): unknown => ({ database_name: 'app', postgresql_conf: { work_mem: '4MB' }, nodes: [{ name: 'n1', host_ids: ['host-1'], port }] })
    await ok(h1.post('/v1/databases', { id: 'fields', spec: base(5501) }), 'create fields')
    await ok(h1.post('/v1/databases', { id: 'same', spec: base(5511) }), 'create same')
    await ok(h1.post('/v1/databases', { id: 'racing', spec: base(5521) }), 'create racing')
    await ok(h1.post('/v1/databases', {
      id: 'invalid',
      spec: { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5531 }, { name: 'n2', host_ids: ['host-1'], port: 5532 }] }
    }), 'create invalid')
    await until('setup on host-3', async () => (await h3.get('/v1/databases/invalid')).status === 200)

    // Side A: hosts 1 and 2, with host 3 down.
    await h3.stop()
    await updateSpec(h1, 'fields', s => { s.postgresql_conf.work_mem = '8MB' })
    await updateSpec(h2, 'same', s => { s.postgresql_conf.work_mem = '16MB' })
    await ok(h1.request('DELETE', '/v1/databases/racing'), 'delete racing')
    await ok(h2.post('/v1/databases', { id: 'dup', spec: { database_name: 'from_a', nodes: [{ name: 'n1', host_ids: ['host-1'] }] } }), 'create dup on A')
    await updateSpec(h1, 'invalid', s => { s.nodes[0].port = 5600 })
    await until('side A settled', async () => await heads(h1) === await heads(h2))
    await h1.stop()
    await h2.stop()

    // Side B: host 3 alone, from its own data dir.
    await h3.start()
    await updateSpec(h3, 'fields', s => { s.nodes[0].port = 5599 })
    await updateSpec(h3, 'same', s => { s.postgresql_conf.work_mem = '32MB' })
    await updateSpec(h3, 'racing', s => { s.postgresql_conf.work_mem = '64MB' })
    await ok(h3.post('/v1/databases', { id: 'dup', spec: { database_name: 'from_b', nodes: [{ name: 'n1', host_ids: ['host-3'] }] } }), 'create dup on B')
    await updateSpec(h3, 'invalid', s => { s.nodes[1].port = 5600 })
    await h3.stop()

    // Heal.
    await Promise.all([h1.start(), h2.start(), h3.start()])
    await until('identical documents on all hosts', async () => {
      const all = await Promise.all([h1, h2, h3].map(heads))
      return new Set(all).size === 1
    }, 30_000, 100)
    // Three daemons started, joined, stopped and restarted: ~35 s on a quiet machine, past a minute under load.
  }, 180_000)

  afterAll(async () => { await cluster.destroy() })

  it('keeps concurrent updates of different fields', async () => {
    for (const d of [h1, h2, h3]) {
      const db = await ok(d.get('/v1/databases/fields'), 'get')
      expect(db.spec.postgresql_conf.work_mem, d.hostId).toBe('8MB')
      expect(db.spec.nodes[0].port, d.hostId).toBe(5599)
      expect(db.conflicts, d.hostId).toBeUndefined()
    }
  })

  it('converges concurrent updates of one field to one value, shows the conflict, and lets an update settle it', async () => {
    const views = await Promise.all([h1, h2, h3].map(async d => await ok(d.get('/v1/databases/same'), 'get')))
    const values = new Set(views.map(v => v.spec.postgresql_conf.work_mem))
    expect(values.size).toBe(1)
    expect(['16MB', '32MB']).toContain([...values][0])
    for (const v of views) {
      expect(v.conflicts).toHaveLength(1)
      expect(v.conflicts[0].path).toBe('spec.postgresql_conf.work_mem')
      expect([...v.conflicts[0].values].sort()).toEqual(['16MB', '32MB'])
      expect([...v.conflicts[0].hosts].sort()).toEqual(['host-2', 'host-3'])
      expect(v.conflicts[0].values[0]).toBe(v.spec.postgresql_conf.work_mem)
    }
    await updateSpec(h1, 'same', s => { s.postgresql_conf.work_mem = views[0].spec.postgresql_conf.work_mem })
    for (const d of [h1, h2, h3]) {
      await until(`conflict settled on ${d.hostId}`, async () => (await ok(d.get('/v1/databases/same'), 'get')).conflicts === undefined, 5000)
    }
  })

  it('ends a delete racing an update deleted on every host', async () => {
    for (const d of [h1, h2, h3]) {
      const res = await d.get('/v1/databases/racing')
      expect(res.status, d.hostId).toBe(200)
      expect(res.body.state, d.hostId).toBe('deleting')
      const update = await d.post('/v1/databases/racing', { spec: res.body.spec })
      expect(update.status).toBe(409)
      expect(update.body.name).toBe('database_not_modifiable')
    }
  })

  it('resolves two creates of one id to the same database everywhere and reports it', async () => {
    const views = await Promise.all([h1, h2, h3].map(async d => await ok(d.get('/v1/databases/dup'), 'get')))
    const names = new Set(views.map(v => v.spec.database_name))
    expect(names.size).toBe(1)
    for (const v of views) {
      const whole = (v.conflicts ?? []).find((c: { path: string }) => c.path === '')
      expect(whole).toBeDefined()
      expect([...whole.hosts].sort()).toEqual(['host-2', 'host-3'])
    }
    // The losing create's task does not pretend to be the database's.
    const tasks = (await ok(h1.get('/v1/databases/dup/tasks'), 'tasks')).tasks as Array<{ type: string }>
    expect(tasks.filter(t => t.type === 'create')).toHaveLength(2)
  })

  it('does not apply a merged spec that fails validation, says why, and takes an update that fixes it', async () => {
    for (const d of [h1, h2, h3]) {
      const db = await ok(d.get('/v1/databases/invalid'), 'get')
      expect(db.state, d.hostId).toBe('failed')
      expect(db.spec_errors.join('\n'), d.hostId).toMatch(/duplicate ports allocated on host 'host-1'/)
    }
    await updateSpec(h2, 'invalid', s => { s.nodes[1].port = 5601 })
    for (const d of [h1, h2, h3]) {
      await until(`fixed on ${d.hostId}`, async () => {
        const db = await ok(d.get('/v1/databases/invalid'), 'get')
        return db.spec_errors === undefined && db.state !== 'failed'
      }, 5000)
    }
  })

  it('records the history of each side and diffs two versions', async () => {
    const history = await ok(h1.get('/v1/databases/same/history'), 'history')
    const ops = history.changes.map((c: { host_id: string, operation: string }) => `${c.host_id}:${c.operation}`)
    expect(ops).toContain('host-1:database.create')
    expect(ops).toContain('host-2:database.update')
    expect(ops).toContain('host-3:database.update')
    const first = history.changes[0].version
    const fromB = history.changes.find((c: { host_id: string }) => c.host_id === 'host-3').version
    const diff = await ok(h1.get(`/v1/databases/same/history?from=${first}&to=${fromB}`), 'diff')
    expect(diff.diff).toContainEqual({ path: 'spec.postgresql_conf.work_mem', action: 'set', before: '4MB', after: '32MB' })
  })
})
