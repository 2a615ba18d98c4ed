// Removing a host through the API (in process, one host, no orchestrator): the anchor's guards and errors, and a
// forced removal's edits of every database spec that names the host, as tasks of the remove_host task.
import { instanceId, type ObservedInstance } from '@pgmesh/model'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

let api: ApiFixture
const call = async (method: string, path: string, body?: unknown): ReturnType<ApiFixture['call']> => await api.call(method, path, body)

async function addHost (id: string, peerId: string): Promise<void> {
  // As a join would record it; no daemon behind it: only the document matters here.
  await api.host.state.change({ op: 'test.host', entity: id }, d => {
    d.hosts[id] = { ...JSON.parse(JSON.stringify(d.hosts['host-1'])), id, peer_id: peerId, peer_addresses: [] }
  })
}

async function create (id: string, nodes: Array<{ name: string, host_ids: string[] }>): Promise<void> {
  const res = await call('POST', '/v1/databases', { id, spec: { database_name: 'app', database_users: [{ username: 'admin', password: 'removal-secret', attributes: ['LOGIN'] }], nodes } })
  expect(res.status, res.text).toBe(200)
}

/** host-1 reports its instance of a node as the serving primary (the reconciler's part in a daemon). */
function servesPrimary (databaseId: string, node: string): ObservedInstance {
  return {
    id: instanceId(databaseId, node, 'host-1'), database_id: databaseId, node_name: node, host_id: 'host-1', state: 'available', role: 'primary',
    port: 5432, generation: 1, updated_at: '2026-11-30T05:00:00Z'
  }
}

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'c1' })
  await addHost('host-2', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA')
  await addHost('host-3', '12D3KooWKP6nxopy5Lpt6igYppo8p6qvCpr6gfSH2zuJVhbQABRx')
})

afterAll(async () => {
  await api.stop()
})

describe('DELETE /v1/hosts/{id}', () => {
  it('answers the anchor\'s errors: unknown host, itself, and instances placed on it without force', async () => {
    expect(await call('DELETE', '/v1/hosts/host-9?force=true')).toMatchObject({ status: 404, json: { name: 'not_found', message: 'no host found with the given ID' } })
    expect(await call('DELETE', '/v1/hosts/host-1?force=true')).toMatchObject({ status: 400, json: { name: 'invalid_input', message: 'a host cannot remove itself from the cluster' } })
    await create('spread', [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }])
    expect(await call('DELETE', '/v1/hosts/host-2')).toMatchObject({ status: 400, json: { name: 'invalid_input', message: 'cannot remove host with running instances' } })
    expect(await call('DELETE', '/v1/hosts/host-2?force=false')).toMatchObject({ status: 400 })
    expect((await call('GET', '/v1/hosts/host-2')).status).toBe(200)
  })

  it('with force, waits for a replica to take over a primary on the host, and refuses when none does', async () => {
    await create('primary-there', [{ name: 'n1', host_ids: ['host-3', 'host-1'] }])
    await expect(api.host.membership.removeHost('host-3', true, 300)).rejects.toThrow(
      "cannot remove host 'host-3' yet: no instance on another host serves as the primary of node n1 of database primary-there (a dead host's replica takes over by itself within seconds; switch a live host's primary over first)")
    // Nothing was written: the host and the spec are as they were.
    expect((await call('GET', '/v1/hosts/host-3')).status).toBe(200)
    expect((await call('GET', '/v1/databases/primary-there')).json.spec.nodes[0].host_ids).toEqual(['host-3', 'host-1'])
    expect((await call('DELETE', '/v1/databases/primary-there')).status).toBe(200)
  })

  it('with force, takes the host out of every spec as updates (and a delete) of the remove_host task, then drops it', async () => {
    await create('only-there', [{ name: 'n1', host_ids: ['host-2'] }])
    await create('elsewhere', [{ name: 'n1', host_ids: ['host-1'] }])
    api.reported = [servesPrimary('spread', 'n1')]
    const res = await call('DELETE', '/v1/hosts/host-2?force=true')
    expect(res.status, res.text).toBe(200)
    const { task, update_database_tasks: children } = res.json as { task: Record<string, unknown>, update_database_tasks: Array<Record<string, unknown>> }
    // It finishes with its databases' tasks (the reconcilers' part).
    expect(task).toMatchObject({ scope: 'host', entity_id: 'host-2', type: 'remove_host', status: 'running' })
    expect(children.map(c => [c.database_id, c.type, c.parent_id]).sort()).toEqual([['only-there', 'delete', task.task_id], ['spread', 'update', task.task_id]])
    for (const c of children) expect(Object.keys(c)).not.toContain('remove_hosts')

    expect((await call('GET', '/v1/hosts/host-2')).status).toBe(404)
    expect((await call('GET', '/v1/hosts')).json.hosts.map((h: { id: string }) => h.id)).toEqual(['host-1', 'host-3'])
    const spread = (await call('GET', '/v1/databases/spread')).json
    expect(spread.spec.nodes).toEqual([{ name: 'n1', host_ids: ['host-1'] }, { name: 'n3', host_ids: ['host-3'] }])
    expect(spread.state).toBe('modifying')
    expect(spread.spec_errors).toBeUndefined()
    expect(JSON.stringify(spread)).not.toContain('host-2')
    expect((await call('GET', '/v1/databases/only-there')).json.state).toBe('deleting')
    expect((await call('GET', '/v1/databases/elsewhere')).json.state).toBe('creating')
    // The update treats the host as gone (its instances are not waited for); the secrets are still there.
    const update = api.host.document.tasks.get(children.find(c => c.type === 'update')?.task_id as string)
    expect(update?.remove_hosts).toEqual(['host-2'])
    expect(api.host.document.databases.desired().find(d => d.id === 'spread')?.spec?.database_users?.[0]?.password).toBe('removal-secret')

    const log = (await call('GET', `/v1/hosts/host-2/tasks/${task.task_id as string}/logs`)).json
    const messages = (log?.entries ?? []).map((e: { message: string }) => e.message)
    expect(messages[0]).toBe("removing host 'host-2'")
    expect(messages.at(-1)).toBe("removed host 'host-2'")
  })

  it('closes the remove_host task once its databases\' tasks are done', async () => {
    const parent = api.host.document.tasks.list({ scope: 'host', entityId: 'host-2' })[0]
    const children = api.host.document.tasks.list({}).filter(t => t.parent_id === parent?.task_id)
    for (const child of children.slice(1)) await api.host.document.databases.settle(child.database_id ?? '', child.task_id, { status: 'completed' })
    await api.host.document.tasks.settleParents()
    expect(api.host.document.tasks.get(parent?.task_id ?? '')?.status).toBe('running')
    const first = children[0]
    await api.host.document.databases.settle(first?.database_id ?? '', first?.task_id ?? '', { status: 'failed', error: 'instance x: boom' })
    await api.host.document.tasks.settleParents()
    expect(api.host.document.tasks.get(parent?.task_id ?? '')).toMatchObject({ status: 'failed', error: `database ${first?.database_id ?? ''}: instance x: boom` })
  })
})

describe('remove_host and force on databases', () => {
  it('an update keeps remove_host on its task, never in a response; a delete keeps force', async () => {
    const spec = (await call('GET', '/v1/databases/elsewhere')).json.spec
    const update = await call('POST', '/v1/databases/elsewhere?remove_host=host-3', { spec })
    expect(update.status, update.text).toBe(200)
    expect(update.text).not.toContain('remove_hosts')
    expect(api.host.document.tasks.get(update.json.task.task_id as string)?.remove_hosts).toEqual(['host-3'])
    const deleted = await call('DELETE', '/v1/databases/elsewhere?force=true')
    expect(deleted.status, deleted.text).toBe(200)
    expect(deleted.json.task).toMatchObject({ type: 'delete', database_id: 'elsewhere' })
    expect(Object.keys(deleted.json.task)).not.toContain('force')
    expect(api.host.document.tasks.get(deleted.json.task.task_id as string)?.force).toBe(true)
  })
})
