import { instanceId, type ObservedInstance } from '@pgmesh/model'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

// The on-demand backup endpoint in process: the anchor's preconditions and errors, the request recorded for the
// node's primary's host, and the instance shown backing_up while that host runs it.

let api: ApiFixture
const PRIMARY = instanceId('bk', 'n1', 'host-1')
const primary = (state: ObservedInstance['state']): ObservedInstance => ({
  id: PRIMARY, database_id: 'bk', node_name: 'n1', host_id: 'host-1', state, role: 'primary', generation: 1, updated_at: new Date().toISOString()
})

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'c1' })
  const backup = { repositories: [{ id: 'r', type: 'posix', base_path: '/backups', s3_key: 'AKIA-API-TEST-SECRET' }] }
  for (const [id, extra] of [['bk', { backup_config: backup }], ['plain', {}]] as const) {
    const res = await api.call('POST', '/v1/databases', { id, spec: { database_name: id, nodes: [{ name: 'n1', host_ids: ['host-1'] }], ...extra } })
    expect(res.status, res.text).toBe(200)
    expect(res.text).not.toContain('AKIA-API-TEST-SECRET')
  }
})

afterAll(async () => { await api.stop() })

async function reported (state: ObservedInstance['state']): Promise<void> {
  api.reported = [primary(state)]
  // This host's own report is read at most every 100 ms.
  for (let i = 0; i < 50; i++) {
    const db = await api.call('GET', '/v1/databases/bk')
    if (db.json.instances?.[0]?.state === state) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

describe('POST /v1/databases/{id}/nodes/{node}/backups', () => {
  it("answers the anchor's errors", async () => {
    await reported('modifying')
    const cases: Array<[string, unknown, number, string, string]> = [
      ['/v1/databases/bk/nodes/n1/backups', { type: 'full' }, 400, 'invalid_input', 'node n1 is in an unsupported state (modifying)'],
      ['/v1/databases/bk/nodes/n9/backups', { type: 'full' }, 400, 'invalid_input', 'node n9 not found'],
      ['/v1/databases/plain/nodes/n1/backups', { type: 'full' }, 400, 'invalid_input', 'backups are not configured for this database node'],
      ['/v1/databases/none/nodes/n1/backups', { type: 'full' }, 404, 'not_found', 'database not found'],
      ['/v1/databases/bk/nodes/n1/backups', { type: 'full', backup_options: { 'repo1-host-cmd': '/bin/sh' } }, 400, 'invalid_input', "backup_options[repo1-host-cmd]: option 'repo1-host-cmd' runs a command and is not allowed"],
      ['/v1/databases/bk/nodes/n1/backups', { type: 'full', annotations: { 'a=b': 'c' } }, 400, 'invalid_input', 'annotations[a=b]: invalid annotation key'],
      ['/v1/databases/bk/nodes/n1/backups', { type: 'full', extra: 1 }, 400, 'invalid_input', 'extra']
    ]
    for (const [path, body, status, name, message] of cases) {
      const res = await api.call('POST', path, body)
      expect([res.status, res.json.name], res.text).toEqual([status, name])
      expect(res.json.message).toContain(message)
    }
  })

  it('records the request for the primary\'s host, which shows the instance backing_up while it runs', async () => {
    await reported('available')
    const res = await api.call('POST', '/v1/databases/bk/nodes/n1/backups', { type: 'incr', annotations: { by: 'test' }, backup_options: { 'compress-level': '3' } })
    expect(res.status, res.text).toBe(200)
    expect(res.json.task).toMatchObject({ type: 'node_backup', status: 'pending', database_id: 'bk', node_name: 'n1' })
    const taskId = res.json.task.task_id as string
    const backups = api.host.document.backups
    expect(backups.requests('bk')).toEqual([{ task_id: taskId, node_name: 'n1', type: 'incr', annotations: { by: 'test' }, backup_options: { 'compress-level': '3' } }])

    expect(await backups.started('bk', taskId, 'host-1', PRIMARY)).toBe(true)
    const running = await api.call('GET', '/v1/databases/bk')
    expect(running.json.instances[0].state).toBe('backing_up')
    expect((await api.call('GET', `/v1/databases/bk/tasks/${taskId}`)).json).toMatchObject({ status: 'running', host_id: 'host-1', instance_id: PRIMARY })

    await backups.finished('bk', taskId, undefined)
    expect(backups.requests('bk')).toEqual([])
    expect((await api.call('GET', '/v1/databases/bk')).json.instances[0].state).toBe('available')
    const log = await api.call('GET', `/v1/databases/bk/tasks/${taskId}/log`)
    expect(log.json.entries.map((e: { message: string }) => e.message)).toEqual(['task created', `backing up instance ${PRIMARY}`, 'task completed'])
  })
})

describe('POST /v1/databases/{id}/restore', () => {
  const restoreConfig = { source_database_id: 'bk', source_node_name: 'n1', source_database_name: 'bk', repository: { id: 'r', type: 'posix', base_path: '/backups', s3_key: 'AKIA-API-TEST-SECRET' } }

  it('records a restore task, a node_restore per node and the node requests, and drops the nodes\' backup_config', async () => {
    // The create task is still running here (nothing reconciles): the anchor refuses without force.
    const busy = await api.call('POST', '/v1/databases/bk/restore', { restore_config: restoreConfig })
    expect([busy.status, busy.json.name], busy.text).toEqual([409, 'database_not_modifiable'])
    const res = await api.call('POST', '/v1/databases/bk/restore?force=true', { restore_config: { ...restoreConfig, restore_options: { type: 'immediate' } } })
    expect(res.status, res.text).toBe(200)
    expect(res.text).not.toContain('AKIA-API-TEST-SECRET')
    expect(res.json.task).toMatchObject({ type: 'restore', database_id: 'bk' })
    expect(res.json.node_tasks).toEqual([expect.objectContaining({ type: 'node_restore', node_name: 'n1', parent_id: res.json.task.task_id })])
    expect(res.json.database.state).toBe('restoring')
    expect(res.json.database.spec.backup_config).toBeUndefined()
    const db = await api.call('GET', '/v1/databases/bk')
    expect([db.json.state, db.json.spec.backup_config]).toEqual(['restoring', undefined])
    expect(db.text).not.toContain('AKIA-API-TEST-SECRET')
  })
})
