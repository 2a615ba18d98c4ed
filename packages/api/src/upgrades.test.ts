import { utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

// The operator's manifest file, merged over the embedded one (pgmesh/postgres:15.18 and :15.20).
const operatorImages = [
  { postgres_version: '15.21', image: 'pgmesh/postgres:15.21', stability: 'stable' },
  { postgres_version: '15.22', image: 'pgmesh/postgres:15.22-rc1', stability: 'dev' },
  { postgres_version: '16.4', image: 'pgmesh/postgres:16.4', stability: 'stable' }
]
const spec = (version: string, image: string, n2Port = 5433): Record<string, unknown> => ({
  database_name: 'app',
  postgres_version: version,
  orchestrator_opts: { swarm: { image } },
  database_users: [{ username: 'admin', password: 'secret-password-1', db_owner: true, attributes: ['LOGIN'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-1'], postgres_version: '15.18', port: n2Port }]
})

describe('upgrades on a Swarm host', () => {
  let api: ApiFixture
  let dir: string
  let manifestPath: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgmesh-manifest-'))
    manifestPath = join(dir, 'manifest.json')
    await writeFile(manifestPath, JSON.stringify({ schema_version: 1, images: { postgres: operatorImages } }))
    api = await startApiFixture({ clusterId: 'c1', orchestrator: 'swarm', manifestPath })
    expect((await api.call('POST', '/v1/databases', { id: 'app', spec: spec('15.18', 'pgmesh/postgres:15.18') })).status).toBe(200)
    expect((await api.call('POST', '/v1/databases', { id: 'newest', spec: spec('15.21', 'pgmesh/postgres:15.21', 5434) })).status).toBe(200)
  })

  afterAll(async () => {
    await api.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('lists available upgrades only when asked: stable, same major, newer, oldest first; none is no field', async () => {
    expect((await api.call('GET', '/v1/databases/app')).json.available_upgrades).toBeUndefined()
    const one = await api.call('GET', '/v1/databases/app?include=available_upgrades')
    expect(one.status).toBe(200)
    expect(one.json.available_upgrades).toEqual([
      { postgres_version: '15.20', image: 'pgmesh/postgres:15.20' },
      { postgres_version: '15.21', image: 'pgmesh/postgres:15.21' }
    ])
    const list = await api.call('GET', '/v1/databases?include=available_upgrades')
    expect(list.status).toBe(200)
    const byId = new Map((list.json.databases as Array<{ id: string, available_upgrades?: unknown[] }>).map(d => [d.id, d]))
    expect(byId.get('app')?.available_upgrades).toHaveLength(2)
    expect(byId.get('newest')).not.toHaveProperty('available_upgrades')
    expect((await api.call('GET', '/v1/databases')).json.databases.some((d: object) => 'available_upgrades' in d)).toBe(false)
  })

  it('takes backup_config and restores on Swarm hosts only with a posix repository on a mounted host path, and stores nothing otherwise', async () => {
    const withBackups = { ...spec('15.20', 'pgmesh/postgres:15.20', 5435), backup_config: { repositories: [{ type: 'posix', base_path: '/backups/pg' }, { type: 's3', s3_bucket: 'bucket' }] } }
    const res = await api.call('POST', '/v1/databases', { id: 'backed', spec: withBackups })
    expect(res.status).toBe(400)
    expect(res.json.name).toBe('invalid_input')
    const unmounted = (node: string): string => `backup_config.repositories[0].base_path: node ${node} runs on Swarm: the posix repository must be on a host path mounted into its containers (orchestrator_opts.swarm.extra_volumes with a destination_path containing /backups/pg), or pgBackRest inside them cannot keep or find it`
    expect(res.json.message).toBe([unmounted('n1'), unmounted('n2')].join('\n'))
    expect((await api.call('GET', '/v1/databases/backed')).status).toBe(404)

    const mounted = { ...withBackups, orchestrator_opts: { swarm: { image: 'pgmesh/postgres:15.20', extra_volumes: [{ host_path: '/srv/backups', destination_path: '/backups/' }] } } }
    const accepted = await api.call('POST', '/v1/databases', { id: 'backed', spec: mounted })
    expect(accepted.status, JSON.stringify(accepted.json)).toBe(200)
    // An in-place restore from a repository its containers do not mount is refused before anything is stopped.
    const restore = await api.call('POST', '/v1/databases/backed/restore?force=true', {
      restore_config: { source_database_id: 'backed', source_node_name: 'n1', source_database_name: 'app', repository: { type: 'posix', base_path: '/elsewhere' } },
      target_nodes: ['n2']
    })
    expect(restore.status).toBe(400)
    expect(restore.json).toEqual({
      name: 'invalid_input',
      message: 'restore_config.repository.base_path: node n2 runs on Swarm: the posix repository must be on a host path mounted into its containers (orchestrator_opts.swarm.extra_volumes with a destination_path containing /elsewhere), or pgBackRest inside them cannot keep or find it'
    })
  })

  it('refuses an include it does not support', async () => {
    const res = await api.call('GET', '/v1/databases/app?include=backups')
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ name: 'invalid_input', message: 'query.include: unsupported value "backups": only available_upgrades is supported' })
  })

  it('answers 400 upgrade not available for each image the anchor refuses', async () => {
    const refusal = async (image: string): Promise<unknown> => {
      const res = await api.call('POST', '/v1/databases/app/upgrade', { image })
      expect(res.status, res.text).toBe(400)
      expect(res.json.name).toBe('invalid_input')
      return res.json.message
    }
    expect(await refusal('pgmesh/postgres:15.99')).toBe('upgrade not available: image "pgmesh/postgres:15.99" is not in the version manifest')
    expect(await refusal('pgmesh/postgres:15.22-rc1')).toBe('upgrade not available: image "pgmesh/postgres:15.22-rc1" is not stable (stability dev)')
    expect(await refusal('pgmesh/postgres:16.4')).toBe('upgrade not available: image "pgmesh/postgres:16.4" provides PostgreSQL 16.4, another major version than the database\'s 15.18')
    expect(await refusal('pgmesh/postgres:15.18')).toBe('upgrade not available: image "pgmesh/postgres:15.18" provides PostgreSQL 15.18, which is not newer than the database\'s 15.18')
    expect((await api.call('POST', '/v1/databases/app/upgrade', {})).json).toEqual({ name: 'invalid_input', message: 'image: missing required field' })
    expect((await api.call('POST', '/v1/databases/nope/upgrade', { image: 'pgmesh/postgres:15.20' })).status).toBe(404)
    // Nothing was written: still on 15.18, no task.
    const tasks = (await api.call('GET', '/v1/databases/app/tasks')).json.tasks as Array<{ type: string }>
    expect(tasks.map(t => t.type)).toEqual(['create'])
  })

  it('upgrades through an update: task type upgrade, image and postgres_version moved for every node', async () => {
    const res = await api.call('POST', '/v1/databases/app/upgrade', { image: 'pgmesh/postgres:15.20' })
    expect(res.status, res.text).toBe(200)
    expect(res.json.task).toMatchObject({ type: 'upgrade', status: 'pending', database_id: 'app' })
    expect(res.json.database.state).toBe('modifying')
    const stored = (await api.call('GET', '/v1/databases/app?include=available_upgrades')).json
    expect(stored.spec).toMatchObject({ postgres_version: '15.20', orchestrator_opts: { swarm: { image: 'pgmesh/postgres:15.20' } } })
    expect(stored.spec.nodes[1].postgres_version).toBeUndefined()
    expect(stored.spec.database_users[0]).not.toHaveProperty('password')
    expect(stored.available_upgrades).toEqual([{ postgres_version: '15.21', image: 'pgmesh/postgres:15.21' }])
    // The stored password survived the rewrite of the spec.
    const desired = api.host.document.databases.desired().find(d => d.id === 'app')
    expect(desired?.spec?.database_users?.[0]?.password).toBe('secret-password-1')
    const tasks = (await api.call('GET', '/v1/databases/app/tasks')).json.tasks as Array<{ type: string }>
    expect(tasks.map(t => t.type)).toEqual(['upgrade', 'create'])
  })

  it('lets an update set only a postgres_version the manifest knows, and never another major', async () => {
    const current = (await api.call('GET', '/v1/databases/app')).json.spec
    const unknown = await api.call('POST', '/v1/databases/app', { spec: { ...current, postgres_version: '15.19' } })
    expect(unknown.status).toBe(400)
    expect(unknown.json.message).toBe('postgres_version: postgres version 15.19 is not in the version manifest (known: 15.18, 15.20, 15.21, 15.22, 16.4)')
    const major = await api.call('POST', '/v1/databases/app', { spec: { ...current, postgres_version: '16.4' } })
    expect(major.status).toBe(400)
    expect(major.json.message).toMatch(/^postgres_version: invalid change for instance app-n1-\w+: major version changed from 15 to 16/)
  })

  it('follows the operator\'s manifest file when it changes, without a restart', async () => {
    await writeFile(manifestPath, JSON.stringify({ schema_version: 1, images: { postgres: [...operatorImages, { postgres_version: '15.23', image: 'pgmesh/postgres:15.23', stability: 'stable' }] } }))
    const later = new Date(Date.now() + 5000)
    await utimes(manifestPath, later, later)
    await api.host.manifest.refresh()
    const upgrades = (await api.call('GET', '/v1/databases/app?include=available_upgrades')).json.available_upgrades as Array<{ postgres_version: string }>
    expect(upgrades.map(u => u.postgres_version)).toEqual(['15.21', '15.23'])
    // A broken file leaves the last good manifest in use.
    await writeFile(manifestPath, '{ not json')
    await utimes(manifestPath, new Date(Date.now() + 10_000), new Date(Date.now() + 10_000))
    await api.host.manifest.refresh()
    expect((await api.call('GET', '/v1/databases/app?include=available_upgrades')).json.available_upgrades).toHaveLength(2)
  })
})

describe('upgrades on a process host', () => {
  let api: ApiFixture

  beforeAll(async () => {
    api = await startApiFixture({ clusterId: 'c1' })
    const res = await api.call('POST', '/v1/databases', { id: 'app', spec: { database_name: 'app', postgres_version: '15.18', port: 6543, nodes: [{ name: 'n1', host_ids: ['host-1'] }] } })
    expect(res.status, res.text).toBe(200)
  })

  afterAll(async () => {
    await api.stop()
  })

  it('offers no image upgrade and says what a minor upgrade is there', async () => {
    expect((await api.call('GET', '/v1/databases/app?include=available_upgrades')).json.available_upgrades).toBeUndefined()
    api.reported.push({
      id: 'app-n1-689qacsi', database_id: 'app', node_name: 'n1', host_id: 'host-1', state: 'available', role: 'primary', postgres_version: '15.18', generation: 1, updated_at: new Date().toISOString()
    })
    // This host's own report is read at most 100 ms old.
    await new Promise(resolve => setTimeout(resolve, 150))
    const res = await api.call('POST', '/v1/databases/app/upgrade', { image: 'pgmesh/postgres:15.20' })
    expect(res.status).toBe(400)
    expect(res.json).toEqual({
      name: 'invalid_input',
      message: 'upgrade not available: database app runs on process hosts (host-1), whose PostgreSQL is what their installed packages provide, not an image (running: 15.18); ' +
        'a minor upgrade there is a package upgrade on every host (apt-get install postgresql-15; GET /v1/hosts shows each host\'s installed version in supported_pgedge_versions), ' +
        'then POST /v1/databases/app?force_update=true, which restarts each instance whose binaries are newer than its running server, one at a time (the rolling restart)'
    })
  })
})
