// The attack suite's fuzz run (issue 16): thousands of mutations of a valid create/update body, and raw bodies,
// sent to the API in process. Whatever arrives: no 5xx, every 4xx is exactly `{name, message}`, the known password
// never appears in a response, and memory stays bounded.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'

const PASSWORD = 'fuzz-known-password-91c2'
const RUNS = Number(process.env.PGMESH_FUZZ_RUNS ?? 4000)
let api: ApiFixture

const validSpec = (): Record<string, unknown> => ({
  database_name: 'app',
  postgresql_conf: { work_mem: '16MB', max_connections: 200 },
  pg_hba_conf: ['host all all 10.0.0.0/8 scram-sha-256'],
  database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'], roles: ['pg_read_all_data'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'], postgresql_conf: { shared_buffers: '128MB' } }],
  scripts: { post_init: ['CREATE ROLE app_rw'] }
})

/** Where a mutation lands: the paths of a spec's every kind of field. */
const PATHS: ReadonlyArray<ReadonlyArray<string | number>> = [
  [], ['database_name'], ['postgres_version'], ['port'], ['cpus'], ['memory'], ['nodes'], ['nodes', 0], ['nodes', 0, 'name'],
  ['nodes', 0, 'host_ids'], ['nodes', 0, 'host_ids', 0], ['nodes', 0, 'postgresql_conf'], ['nodes', 0, 'postgresql_conf', 'shared_buffers'],
  ['postgresql_conf'], ['postgresql_conf', 'work_mem'], ['postgresql_conf', 'archive_command'], ['postgresql_conf', 'x\ny'],
  ['pg_hba_conf'], ['pg_hba_conf', 0], ['pg_ident_conf'], ['database_users'], ['database_users', 0], ['database_users', 0, 'username'],
  ['database_users', 0, 'attributes'], ['database_users', 0, 'roles', 0], ['scripts'], ['scripts', 'post_init', 0], ['scripts', 'post_database_create'],
  ['services'], ['orchestrator_opts'], ['orchestrator_opts', 'swarm', 'image'], ['backup_config'], ['restore_config'], ['unknown_field']
]

/** JSON nested `depth` levels, alternating arrays and objects. */
const nested = (depth: number): unknown => {
  let value: unknown = 'leaf'
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { k: value }
  return value
}

const hostile = fc.oneof(
  fc.string(), fc.string({ unit: 'binary', maxLength: 200 }), fc.integer(), fc.double(), fc.boolean(), fc.constant(null),
  fc.constantFrom('', '\u0000', 'a\nb', "'; DROP TABLE x; --", 'host all all 0.0.0.0/0 trust', 'include /etc/passwd',
    "COPY (SELECT 1) TO PROGRAM 'id'", 'pgmesh', 'pg_execute_server_program', '99999999999999', 'n99999999999', '\u202e\ufeff𝕏'),
  fc.integer({ min: 1, max: 300_000 }).map(n => 'x'.repeat(n)),
  fc.integer({ min: 1, max: 200 }).map(n => nested(n)),
  fc.array(fc.string(), { maxLength: 300 }),
  fc.dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.string(), fc.integer(), fc.constant({ a: [1] })), { maxKeys: 80 }),
  fc.jsonValue({ maxDepth: 6 })
)

/** Sets `value` at `path` (creating objects on the way); an empty path replaces the whole spec. */
function mutate (spec: Record<string, unknown>, path: ReadonlyArray<string | number>, value: unknown): unknown {
  if (path.length === 0) return value
  let target: Record<string | number, unknown> = spec
  for (const key of path.slice(0, -1)) {
    const next = target[key]
    if (typeof next !== 'object' || next === null) target[key] = {}
    target = target[key] as Record<string | number, unknown>
  }
  target[path[path.length - 1] as string | number] = value
  return spec
}

function expectSafe (status: number, text: string): void {
  expect(status, text.slice(0, 300)).toBeLessThan(500)
  expect(text).not.toContain(PASSWORD)
  if (status >= 400) {
    const body = JSON.parse(text) as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['message', 'name'])
    expect(typeof body.name === 'string' && typeof body.message === 'string').toBe(true)
  }
}

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'fuzz' })
  expect((await api.call('POST', '/v1/databases', { id: 'fuzz-base', spec: validSpec() })).status).toBe(200)
})

afterAll(async () => {
  await api.stop()
})

describe('fuzzing the API', () => {
  it(`${RUNS} mutated create and update bodies: no 5xx, the anchor's error shape, no secret, bounded memory`, { timeout: 120_000 }, async () => {
    const rssBefore = process.memoryUsage().rss
    const statuses = new Map<number, number>()
    let n = 0
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...PATHS), hostile, fc.boolean(), fc.boolean(),
      async (path, value, update, wrapUnknown) => {
        const spec = mutate(validSpec(), path, value)
        const body: Record<string, unknown> = update ? { spec } : { id: `fuzz-${n++}`, spec }
        if (wrapUnknown) body.extra = value
        const res = update ? await api.call('POST', '/v1/databases/fuzz-base', body) : await api.call('POST', '/v1/databases', body)
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
        expectSafe(res.status, res.text)
      }), { numRuns: RUNS })
    const growthMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024
    console.log(`fuzz: ${RUNS} bodies, statuses ${JSON.stringify(Object.fromEntries(statuses))}, RSS growth ${growthMb.toFixed(0)} MB`)
    expect(growthMb).toBeLessThan(400)
  })

  it('raw bodies and content types: no 5xx, the anchor error shape', { timeout: 60_000 }, async () => {
    await fc.assert(fc.asyncProperty(
      fc.oneof(fc.string({ maxLength: 2000 }), fc.string({ unit: 'binary', maxLength: 2000 }), fc.jsonValue({ maxDepth: 40 }).map(v => JSON.stringify(v) ?? '')),
      fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', '', 'application/json; charset=utf-8', 'application/merge-patch+json'),
      fc.constantFrom('/v1/databases', '/v1/databases/fuzz-base', '/v1/cluster/join', '/v1/databases/fuzz-base/nodes/n1/switchover'),
      async (body, contentType, path) => {
        const headers: Record<string, string> = contentType === '' ? {} : { 'content-type': contentType }
        const res = await api.app.request(path, { method: 'POST', body, headers })
        expectSafe(res.status, await res.text())
      }), { numRuns: 500 })
  })
})
