import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import * as A from '@automerge/automerge'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, startApiFixture } from './api.fixture.js'
import { openApiDocument } from './app.js'
import { DOCUMENT_FORMAT_HEADER } from '@pgmesh/model'
import { DOCUMENT_FORMAT, plainStrings, SCALAR_STRINGS_FORMAT } from '@pgmesh/state'

let api: ApiFixture
let draining = false
const call = async (method: string, path: string, body?: string | object): ReturnType<ApiFixture['call']> => await api.call(method, path, body)

beforeAll(async () => {
  api = await startApiFixture({ isDraining: () => draining })
})

afterAll(async () => {
  await api.stop()
})

describe('before init', () => {
  it('answers version and the service-desc link', async () => {
    const version = await call('GET', '/v1/version')
    expect(version.status).toBe(200)
    expect(Object.keys(version.json).sort()).toEqual(['arch', 'revision', 'revision_time', 'version'])
    const root = await call('GET', '/')
    expect(root.status).toBe(204)
    expect(root.headers.get('link')).toBe('</v1/openapi.json>; rel="service-desc"')
  })

  it('refuses everything else with cluster_not_initialized', async () => {
    for (const path of ['/v1/cluster', '/v1/hosts', '/v1/hosts/host-1', '/v1/cluster/join-token']) {
      const res = await call('GET', path)
      expect(res.status, path).toBe(409)
      expect(res.json).toEqual({ name: 'cluster_not_initialized', message: 'this operation is invalid on an uninitialized cluster' })
    }
  })

  it('rejects a bad cluster id', async () => {
    const res = await call('GET', '/v1/cluster/init?cluster_id=Bad--Id')
    expect(res.status).toBe(400)
    expect(res.json.name).toBe('invalid_input')
    expect(res.json.message).toMatch(/^query\.cluster_id: valid IDs must be 1-36 characters long/)
  })

  it('rejects join bodies that are malformed, incomplete, mistyped or carry unknown fields', async () => {
    const malformed = await call('POST', '/v1/cluster/join', '{"token": ')
    expect(malformed.status).toBe(400)
    expect(malformed.json.name).toBe('decode_payload')
    const missing = await call('POST', '/v1/cluster/join', { token: 'x' })
    expect(missing.status).toBe(400)
    expect(missing.json).toEqual({ name: 'invalid_input', message: 'server_urls: missing required field' })
    const wrongType = await call('POST', '/v1/cluster/join', { token: 5, server_urls: ['http://127.0.0.1:1'] })
    expect(wrongType.status).toBe(400)
    expect(wrongType.json.message).toMatch(/^token: must be a string$/)
    const unknown = await call('POST', '/v1/cluster/join', { token: 't', server_urls: ['http://127.0.0.1:1'], extra: 1 })
    expect(unknown.status).toBe(400)
    expect(unknown.json).toEqual({ name: 'invalid_input', message: 'extra: unknown field' })
    const several = await call('POST', '/v1/cluster/join', { server_urls: ['not a url'] })
    expect(several.json.message.split('\n')).toHaveLength(2)
  })
})

describe('after init', () => {
  let token: string
  beforeAll(async () => {
    const res = await call('GET', '/v1/cluster/init?cluster_id=c1')
    expect(res.status).toBe(200)
    token = res.json.token
  })

  it('returns tokens in the anchor format, a new one each time (only hashes are kept), naming the same key', async () => {
    expect(token).toMatch(/^PGEDGE-[0-9a-f]{64}-[0-9a-f]{32}$/)
    const again = await call('GET', '/v1/cluster/join-token')
    expect(again.json.server_urls).toEqual(['http://127.0.0.1:1'])
    expect(again.json.token).not.toBe(token)
    expect(again.json.token.slice(0, 71)).toBe(token.slice(0, 71))
    expect(JSON.stringify(api.host.state.doc.join_tokens)).not.toContain(token.slice(72))
  })

  it('refuses a second init and a join', async () => {
    const init = await call('GET', '/v1/cluster/init')
    expect(init.status).toBe(409)
    expect(init.json.name).toBe('cluster_already_initialized')
    const join = await call('POST', '/v1/cluster/join', { token, server_urls: ['http://127.0.0.1:1'] })
    expect(join.status).toBe(409)
    expect(join.json.name).toBe('cluster_already_initialized')
  })

  it('checks join tokens in the internal join-options call', async () => {
    const bad = await call('POST', '/v1/internal/cluster/join-options', { token: token.slice(0, -1) + (token.endsWith('0') ? '1' : '0'), host_id: 'host-2' })
    expect(bad.status).toBe(401)
    expect(bad.json).toEqual({ name: 'invalid_join_token', message: 'the given join token is invalid' })
    const dup = await call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'host-1' })
    expect(dup.status).toBe(400)
    expect(dup.json.message).toBe('a host with ID host-1 already exists in the cluster')
    // A host of a pgmesh that reads strings only as text (it sends no document format) cannot join a document that
    // holds scalars, as this one (created on this version) does.
    const old = await call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'host-2' })
    expect(old.status).toBe(400)
    expect(old.json).toEqual({ name: 'invalid_input', message: expect.stringMatching(/^host host-2 runs a pgmesh that reads the cluster document only with strings as text \(document format 1\).*install this cluster's pgmesh version on host-2/) })
    // One that reads scalars but keeps databases and tasks in one map each cannot join a bucketed document.
    const flat = await api.call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'host-2' }, { [DOCUMENT_FORMAT_HEADER]: String(SCALAR_STRINGS_FORMAT) })
    expect(flat.status).toBe(400)
    expect(flat.json).toEqual({ name: 'invalid_input', message: expect.stringMatching(/^host host-2 runs a pgmesh that reads the cluster document only with databases and tasks in one map each \(document format 2\).*install this cluster's pgmesh version on host-2/) })
    const ok = await api.call('POST', '/v1/internal/cluster/join-options', { token, host_id: 'host-2' }, { [DOCUMENT_FORMAT_HEADER]: String(DOCUMENT_FORMAT) })
    expect(ok.status).toBe(200)
    expect(ok.json.cluster_id).toBe('c1')
    expect(ok.json.bootstrap[0]).toMatch(/\/p2p\//)
  })

  it('hands a joining host the whole document behind the same token check', async () => {
    const bad = await call('POST', '/v1/internal/cluster/join-document', { token: token.slice(0, -1) + (token.endsWith('0') ? '1' : '0') })
    expect(bad.status).toBe(401)
    expect(bad.json.name).toBe('invalid_join_token')
    const res = await api.app.request('/v1/internal/cluster/join-document', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    const doc = plainStrings(A.load<{ cluster?: { id: string } }>(new Uint8Array(await res.arrayBuffer())))
    expect(doc.cluster?.id).toBe('c1')
    expect(A.getHeads(doc)).toEqual(api.host.state.heads())
  })

  it('takes a joining host\'s own record behind the same token check, into this document at once', async () => {
    const joiner = A.load<{ hosts: Record<string, unknown> }>(A.save(api.host.state.automergeDoc))
    const record = { id: 'host-7', peer_id: '', peer_addresses: [], client_addresses: ['127.0.0.1'], api_url: 'http://127.0.0.1:9', orchestrator: 'process', data_dir: '/var/lib/pgmesh', cpus: 1, memory: 1, joined_at: new Date().toISOString() }
    const joined = A.change(joiner, d => { d.hosts['host-7'] = record })
    const changes = Buffer.from(A.saveSince(joined, A.getHeads(joiner))).toString('base64')
    const bad = await call('POST', '/v1/internal/cluster/join-record', { token: token.slice(0, -1) + (token.endsWith('0') ? '1' : '0'), changes })
    expect(bad.status).toBe(401)
    expect(api.host.state.doc.hosts?.['host-7']).toBeUndefined()
    const garbage = await call('POST', '/v1/internal/cluster/join-record', { token, changes: Buffer.from('not a change').toString('base64') })
    expect(garbage.status).toBe(400)
    expect(garbage.json).toEqual({ name: 'invalid_input', message: 'changes: not Automerge changes of this document' })
    expect((await call('POST', '/v1/internal/cluster/join-record', { token, changes })).status).toBe(204)
    expect(api.host.state.doc.hosts?.['host-7']).toEqual(record)
    // Gone again, the same way, for the tests below.
    const left = A.change(joined, d => { delete d.hosts['host-7'] })
    expect((await call('POST', '/v1/internal/cluster/join-record', { token, changes: Buffer.from(A.saveSince(left, A.getHeads(joined))).toString('base64') })).status).toBe(204)
    expect(api.host.state.doc.hosts?.['host-7']).toBeUndefined()
  })

  it('lists this host with the anchor fields', async () => {
    const cluster = await call('GET', '/v1/cluster')
    expect(cluster.json.id).toBe('c1')
    expect(cluster.json.status).toEqual({ state: 'available' })
    const hosts = await call('GET', '/v1/hosts')
    expect(hosts.json.hosts).toHaveLength(1)
    const h = hosts.json.hosts[0]
    expect(h).toMatchObject({ id: 'host-1', orchestrator: 'process', data_dir: api.dir, client_addresses: ['127.0.0.1'], status: { state: 'healthy' } })
    expect(h.memory).toMatch(/^\d+(GB|MB|TB)$/)
    expect(h.status.updated_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  })

  it('guards host removal as the anchor does', async () => {
    const self = await call('DELETE', '/v1/hosts/host-1')
    expect(self.status).toBe(400)
    expect(self.json.message).toBe('a host cannot remove itself from the cluster')
    const unknown = await call('DELETE', '/v1/hosts/host-9')
    expect(unknown.status).toBe(404)
    expect(unknown.json).toEqual({ name: 'not_found', message: 'no host found with the given ID' })
    const badQuery = await call('DELETE', '/v1/hosts/host-9?force=yes')
    expect(badQuery.status).toBe(400)
    const get = await call('GET', '/v1/hosts/host-9')
    expect(get.status).toBe(404)
  })

  it('serves metrics in Prometheus text format', async () => {
    const res = await api.app.request('/metrics')
    const text = await res.text()
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    expect(text).toMatch(/^pgmesh_cluster_hosts 1$/m)
    expect(text).toMatch(/^pgmesh_document_bytes \d+$/m)
    expect(text).toMatch(/pgmesh_change_visible_seconds_bucket/)
  })

  it('answers 503 to new requests while draining, but stays live', async () => {
    draining = true
    try {
      expect((await call('GET', '/v1/hosts')).status).toBe(503)
      expect((await call('GET', '/livez')).status).toBe(200)
    } finally {
      draining = false
    }
  })
})

describe('OpenAPI', () => {
  it('is served and matches the checked-in spec/openapi.json', async () => {
    const served = await call('GET', '/v1/openapi.json')
    expect(served.status).toBe(200)
    expect(served.json.paths['/v1/cluster/join']).toBeDefined()
    expect(served.json.paths['/v1/internal/cluster/join-options']).toBeUndefined()
    const checkedIn = JSON.parse(await readFile(resolve(import.meta.dirname, '../../../spec/openapi.json'), 'utf8'))
    // Regenerate with `npm run openapi` when this fails.
    expect(checkedIn).toEqual(openApiDocument(api.app))
  })
})
