import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

// Logs go to a buffer so the test can prove secrets never reach them.
const logLines: string[] = []
const logger = pino({ level: 'debug' }, { write: (line: string) => { logLines.push(line) } })
let api: ApiFixture
const call = async (method: string, path: string, body?: unknown): ReturnType<ApiFixture['call']> => await api.call(method, path, body)

const spec = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  database_name: 'storefront',
  database_users: [{ username: 'admin', password: 'hunter2-very-secret', db_owner: true, attributes: ['LOGIN'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  ...extra
})

beforeAll(async () => {
  api = await startApiFixture({ logger, clusterId: 'c1' })
})

afterAll(async () => {
  await api.stop()
})

describe('databases', () => {
  let createTaskId: string

  it('creates a database: a pending create task and the database creating, secrets left out', async () => {
    const res = await call('POST', '/v1/databases', { id: 'storefront', spec: spec() })
    expect(res.status).toBe(200)
    expect(res.json.task).toMatchObject({ scope: 'database', entity_id: 'storefront', database_id: 'storefront', type: 'create', status: 'pending' })
    expect(res.json.task.task_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7/)
    expect(res.json.database).toMatchObject({ id: 'storefront', state: 'creating' })
    expect(res.json.database.spec.database_users[0]).toEqual({ username: 'admin', db_owner: true, attributes: ['LOGIN'] })
    expect(res.json.database.instances).toEqual([{ id: 'storefront-n1-689qacsi', host_id: 'host-1', node_name: 'n1', state: 'unknown' }])
    expect(res.text).not.toContain('hunter2')
    createTaskId = res.json.task.task_id
  })

  it('generates a UUID when no id is given', async () => {
    const res = await call('POST', '/v1/databases', { spec: spec() })
    expect(res.status).toBe(200)
    expect(res.json.database.id).toMatch(/^[0-9a-f-]{36}$/)
    expect((await call('DELETE', `/v1/databases/${res.json.database.id as string}`)).status).toBe(200)
  })

  it('refuses a second create of the same id', async () => {
    const res = await call('POST', '/v1/databases', { id: 'storefront', spec: spec() })
    expect(res.status).toBe(409)
    expect(res.json).toEqual({ name: 'database_already_exists', message: 'a database already exists with the given ID' })
  })

  it('rejects invalid specs with every problem, path-prefixed', async () => {
    const res = await call('POST', '/v1/databases', {
      id: 'bad',
      spec: { database_name: 'x', nodes: [{ name: 'n1', host_ids: ['host-1', 'host-1'] }, { name: 'n1', host_ids: ['host-404'] }] }
    })
    expect(res.status).toBe(400)
    expect(res.json.name).toBe('invalid_input')
    const lines = (res.json.message as string).split('\n')
    expect(lines).toEqual(expect.arrayContaining([
      'nodes[0].host_ids[1]: host IDs must be unique within a node',
      expect.stringMatching(/^nodes\[1\]/)
    ]))
    expect(lines.some(l => l.includes('host-404'))).toBe(true)
    expect((await call('GET', '/v1/databases/bad')).status).toBe(404)
  })

  it('rejects unknown fields and wrong types in the spec', async () => {
    const unknown = await call('POST', '/v1/databases', { id: 'bad', spec: { ...spec(), colour: 'blue' } })
    expect(unknown.status).toBe(400)
    expect(unknown.json.message).toContain('colour: unknown field')
    const wrong = await call('POST', '/v1/databases', { id: 'bad', spec: { ...spec(), port: 'five' } })
    expect(wrong.status).toBe(400)
    expect(wrong.json.message).toMatch(/^port: /)
  })

  it('lists summaries without specs, and gets one with its spec', async () => {
    const list = await call('GET', '/v1/databases')
    const states = Object.fromEntries(list.json.databases.map((d: { id: string, state: string }) => [d.id, d.state]))
    // The database created without an id was deleted; it stays listed as deleting until its delete task is done.
    expect(Object.values(states).sort()).toEqual(['creating', 'deleting'])
    expect(states.storefront).toBe('creating')
    expect(list.json.databases[0].spec).toBeUndefined()
    const get = await call('GET', '/v1/databases/storefront')
    expect(get.json.spec.database_name).toBe('storefront')
    expect((await call('GET', '/v1/databases/nope')).json).toEqual({ name: 'not_found', message: 'database not found' })
  })

  it('serves the list with an ETag that moves with the document and with what hosts report, 304 until then, gzip when accepted', async () => {
    const first = await api.app.request('/v1/databases')
    const etag = first.headers.get('etag') ?? ''
    expect(etag).toMatch(/^W\/"[\w-]+"$/)
    expect((await api.app.request('/v1/databases', { headers: { 'if-none-match': etag } })).status).toBe(304)
    expect((await api.app.request('/v1/databases', { headers: { 'if-none-match': `"other", ${etag.slice(2)}` } })).status).toBe(304)

    // What this host reports about an instance is part of the list: a new report is a new list.
    const instance = { id: 'storefront-n1-689qacsi', database_id: 'storefront', node_name: 'n1', host_id: 'host-1', state: 'available' as const, generation: 1, updated_at: '2026-11-24T00:00:00Z' }
    api.reported = [instance]
    try {
      let reported = await call('GET', '/v1/databases')
      for (let i = 0; i < 50 && reported.json.databases.find((d: { id: string }) => d.id === 'storefront').instances[0].state !== 'available'; i++) {
        await new Promise(resolve => setTimeout(resolve, 20))
        reported = await call('GET', '/v1/databases')
      }
      expect(reported.json.databases.find((d: { id: string }) => d.id === 'storefront').instances[0]).toMatchObject({ state: 'available', status_updated_at: instance.updated_at })
      const afterReport = (await api.app.request('/v1/databases', { headers: { 'if-none-match': etag } }))
      expect(afterReport.status).toBe(200)
      const reportedEtag = afterReport.headers.get('etag') ?? ''
      expect(reportedEtag).not.toBe(etag)
      expect((await call('POST', '/v1/databases', { id: 'etag-probe', spec: spec() })).status).toBe(200)
      const afterCreate = await api.app.request('/v1/databases', { headers: { 'if-none-match': reportedEtag } })
      expect(afterCreate.status).toBe(200)
      const plain = await afterCreate.text()
      expect((JSON.parse(plain) as { databases: Array<{ id: string }> }).databases.map(d => d.id)).toContain('etag-probe')

      expect(plain.length).toBeGreaterThan(512)
      const zipped = await api.app.request('/v1/databases', { headers: { 'accept-encoding': 'gzip' } })
      expect(zipped.headers.get('content-encoding')).toBe('gzip')
      expect(zipped.headers.get('etag')).toBe(afterCreate.headers.get('etag'))
      expect(gunzipSync(Buffer.from(await zipped.arrayBuffer())).toString()).toBe(plain)
      const refused = await api.app.request('/v1/databases', { headers: { 'accept-encoding': 'gzip;q=0, identity' } })
      expect(refused.headers.get('content-encoding')).toBeNull()
    } finally {
      api.reported = []
    }
  })

  it('updates declaratively, keeps an omitted password, supersedes the create task, and refuses immutable changes', async () => {
    const next = spec({ postgresql_conf: { work_mem: '8MB' } })
    ;(next.database_users as Array<Record<string, unknown>>)[0] = { username: 'admin', db_owner: true, attributes: ['LOGIN'] }
    const res = await call('POST', '/v1/databases/storefront', { spec: next })
    expect(res.status, res.text).toBe(200)
    expect(res.json.task.type).toBe('update')
    expect(res.json.database.state).toBe('modifying')
    const stored = api.host.document.databases.desired().find(d => d.id === 'storefront')?.spec
    expect(stored?.database_users?.[0]?.password).toBe('hunter2-very-secret')
    expect(stored?.postgresql_conf?.work_mem).toBe('8MB')
    const create = await call('GET', `/v1/databases/storefront/tasks/${createTaskId}`)
    expect(create.json.status).toBe('canceled')
    const renamed = await call('POST', '/v1/databases/storefront', { spec: { ...next, database_name: 'other' } })
    expect(renamed.status).toBe(400)
    expect(renamed.json.message).toContain('database name cannot be changed')
    const tenant = await call('POST', '/v1/databases/storefront', { tenant_id: 'acme', spec: next })
    expect(tenant.status).toBe(400)
    expect(tenant.json.message).toContain('tenant ID cannot be changed')
  })

  it('lists tasks newest first, pages them, and reads a task log', async () => {
    const all = await call('GET', '/v1/databases/storefront/tasks')
    expect(all.json.tasks.map((t: { type: string }) => t.type)).toEqual(['update', 'create'])
    const asc = await call('GET', '/v1/databases/storefront/tasks?sort_order=ascending&limit=1')
    expect(asc.json.tasks.map((t: { type: string }) => t.type)).toEqual(['create'])
    const after = await call('GET', `/v1/databases/storefront/tasks?after_task_id=${asc.json.tasks[0].task_id as string}&sort_order=asc`)
    expect(after.json.tasks.map((t: { type: string }) => t.type)).toEqual(['update'])
    const global = await call('GET', '/v1/tasks?scope=database&entity_id=storefront')
    expect(global.json.tasks).toHaveLength(2)
    const noScope = await call('GET', '/v1/tasks?entity_id=storefront')
    expect(noScope.json).toEqual({ name: 'invalid_input', message: 'entity_id requires scope to be set' })
    const log = await call('GET', `/v1/databases/storefront/tasks/${createTaskId}/log`)
    expect(log.json).toMatchObject({ scope: 'database', entity_id: 'storefront', database_id: 'storefront', task_id: createTaskId, task_status: 'canceled' })
    expect(log.json.entries[0].message).toBe('task created')
    expect(log.json.last_entry_id).toMatch(/^[0-9a-f-]{36}$/)
    const later = await call('GET', `/v1/databases/storefront/tasks/${createTaskId}/log?after_entry_id=${log.json.last_entry_id as string}`)
    expect(later.json.entries).toEqual([])
    expect(later.json.last_entry_id).toBe(log.json.last_entry_id)
    const badId = await call('GET', '/v1/databases/storefront/tasks/not-a-uuid')
    expect(badId.status).toBe(400)
    expect(badId.json.message).toContain('the given task ID is invalid')
  })

  it('cancels a pending task once, and refuses finished ones', async () => {
    const tasks = (await call('GET', '/v1/databases/storefront/tasks')).json.tasks as Array<{ task_id: string, status: string }>
    const pending = tasks.find(t => t.status === 'pending')
    expect(pending).toBeDefined()
    const res = await call('GET', `/v1/databases/storefront/tasks/${pending?.task_id ?? ''}/cancel`)
    expect(res.status).toBe(200)
    expect(res.json.status).toBe('canceling')
    const again = await call('GET', `/v1/databases/storefront/tasks/${createTaskId}/cancel`)
    expect(again.status).toBe(400)
    expect(again.json.message).toBe('task must be running or pending to be cancelled')
  })

  it('deletes: the database shows deleting and refuses updates', async () => {
    const res = await call('DELETE', '/v1/databases/storefront')
    expect(res.status).toBe(200)
    expect(res.json.task.type).toBe('delete')
    expect((await call('GET', '/v1/databases/storefront')).json.state).toBe('deleting')
    const update = await call('POST', '/v1/databases/storefront', { spec: spec() })
    expect(update.status).toBe(409)
    expect(update.json.name).toBe('database_not_modifiable')
  })

  it('lists the history of changes and diffs versions', async () => {
    const history = await call('GET', '/v1/databases/storefront/history')
    expect(history.json.changes.map((c: { operation: string }) => c.operation)).toEqual(
      expect.arrayContaining(['database.create', 'database.update', 'database.delete']))
    const [first, second] = history.json.changes as Array<{ version: string }>
    const diff = await call('GET', `/v1/databases/storefront/history?from=${first?.version ?? ''}&to=${second?.version ?? ''}`)
    expect(diff.json.diff).toContainEqual({ path: 'spec.postgresql_conf', action: 'set', after: { work_mem: '8MB' } })
    expect(JSON.stringify(diff.json)).not.toContain('hunter2')
    const unknown = await call('GET', `/v1/databases/storefront/history?from=${'0'.repeat(64)}`)
    expect(unknown.status).toBe(400)
  })

  it('never writes a secret to a log line or a task log', async () => {
    expect(logLines.join('')).not.toContain('hunter2')
    for (const f of await readdir(join(api.dir, 'tasks'))) expect(await readFile(join(api.dir, 'tasks', f), 'utf8')).not.toContain('hunter2')
  })

  it('refuses to remove a host that a database places a node on, unless forced', async () => {
    // A second host, as its own join would record it (no daemon behind it: only the document matters here).
    await api.host.state.change({ op: 'test' }, d => {
      d.hosts['host-2'] = { ...JSON.parse(JSON.stringify(d.hosts['host-1'])), id: 'host-2', peer_id: '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', peer_addresses: [] }
    })
    expect((await call('POST', '/v1/databases', { id: 'on-host-2', spec: spec({ nodes: [{ name: 'n1', host_ids: ['host-2'] }] }) })).status).toBe(200)
    const refused = await call('DELETE', '/v1/hosts/host-2')
    expect(refused.status).toBe(400)
    expect(refused.json).toEqual({ name: 'invalid_input', message: 'cannot remove host with running instances' })
    const forced = await call('DELETE', '/v1/hosts/host-2?force=true')
    expect(forced.status, forced.text).toBe(200)
    // Its only node was there: the database goes too, as a delete task of the removal (which ends with it).
    expect(forced.json.task).toMatchObject({ type: 'remove_host', status: 'running' })
    expect(forced.json.update_database_tasks).toMatchObject([{ type: 'delete', database_id: 'on-host-2', parent_id: forced.json.task.task_id }])
    expect((await call('GET', '/v1/hosts/host-2')).status).toBe(404)
  })
})
