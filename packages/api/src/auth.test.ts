// The auth middleware in process: roles, the 401/403 shapes, the Host header and browsers' cross-site requests.
// Client certificates are checked against real TLS connections in test/tls.test.ts.
import { DOCUMENT_FORMAT_HEADER } from '@pgmesh/model'
import { DOCUMENT_FORMAT } from '@pgmesh/state'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, requestApp, startApiFixture } from './api.fixture.js'
import { type App, createApp } from './app.js'
import { apiComponents } from './components.js'

let api: ApiFixture
let tlsApp: App

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'auth' })
  // The same host, as it answers when its API is served over TLS: nothing is open without an identity.
  tlsApp = createApp(apiComponents(api.host), { logger: pino({ level: 'silent' }), auth: { mode: 'tls' } })
})

afterAll(async () => {
  await api.stop()
})

async function send (app: App, method: string, url: string, headers: Record<string, string> = {}, body?: unknown): Promise<{ status: number, json: any }> {
  return await requestApp(app, method, url, body, headers)
}

async function token (role: 'viewer' | 'operator', expiresIn?: string): Promise<string> {
  const res = await send(api.app, 'POST', 'http://localhost/v1/tokens', {}, { name: `${role} token`, role, ...(expiresIn === undefined ? {} : { expires_in: expiresIn }) })
  expect(res.status).toBe(201)
  return res.json.token
}

describe('loopback plain HTTP (the default)', () => {
  it('lets requests without credentials act as operators, as the quickstart needs', async () => {
    expect((await send(api.app, 'GET', 'http://localhost/v1/hosts')).status).toBe(200)
    expect((await send(api.app, 'GET', 'http://127.0.0.1:3000/v1/cluster/join-token')).status).toBe(200)
    expect((await send(api.app, 'GET', 'http://[::1]:3000/v1/hosts')).status).toBe(200)
  })

  it('refuses a Host that is not loopback or its API URL (DNS rebinding), with 403 in the anchor shape', async () => {
    const res = await send(api.app, 'GET', 'http://evil.example:3000/v1/cluster/join-token')
    expect(res.status).toBe(403)
    expect(res.json).toEqual({ name: 'forbidden', message: "this API answers only requests for a loopback host or its API URL, not 'evil.example'" })
  })

  it('refuses browsers\' cross-site and same-site requests and foreign origins (CSRF)', async () => {
    for (const site of ['cross-site', 'same-site']) {
      const res = await send(api.app, 'GET', 'http://localhost/v1/cluster/init', { 'sec-fetch-site': site })
      expect(res.status).toBe(403)
      expect(res.json.name).toBe('forbidden')
    }
    expect((await send(api.app, 'POST', 'http://localhost/v1/tokens', { origin: 'http://evil.example' }, { name: 'x', role: 'operator' })).status).toBe(403)
    expect((await send(api.app, 'GET', 'http://localhost/v1/hosts', { origin: 'null' })).status).toBe(403)
    // Same origin (the console served by the host itself) and plain tools pass.
    expect((await send(api.app, 'GET', 'http://localhost/v1/hosts', { origin: 'http://localhost', 'sec-fetch-site': 'same-origin' })).status).toBe(200)
    expect((await send(api.app, 'GET', 'http://localhost/v1/hosts', { 'sec-fetch-site': 'none' })).status).toBe(200)
  })

  it('still checks a bearer token that is given: a wrong one is 401', async () => {
    const res = await send(api.app, 'GET', 'http://localhost/v1/hosts', { authorization: 'Bearer pgm_0123456789abcdef_nope' })
    expect(res.status).toBe(401)
    expect(res.json).toEqual({ name: 'unauthorized', message: 'the bearer token is not valid (unknown, revoked or expired)' })
  })
})

describe('tokens and roles (TLS mode: an identity is required)', () => {
  it('answers 401 without an identity, except on the public routes', async () => {
    for (const path of ['/v1/hosts', '/metrics', '/v1/cluster', '/v1/databases', '/v1/cluster/join-token', '/v1/tokens']) {
      const res = await send(tlsApp, 'GET', `http://h1.example${path}`)
      expect(res.status, path).toBe(401)
      expect(res.json).toEqual({ name: 'unauthorized', message: 'authentication required: a client certificate or a bearer token' })
    }
    expect((await send(tlsApp, 'POST', 'http://h1.example/v1/databases', {}, { id: 'x', spec: {} })).status).toBe(401)
    for (const path of ['/v1/version', '/v1/openapi.json', '/livez']) expect((await send(tlsApp, 'GET', `http://h1.example${path}`)).status, path).toBe(200)
    expect((await send(tlsApp, 'GET', 'http://h1.example/')).status).toBe(204)
    // The join routes are public, behind the join token.
    expect((await send(tlsApp, 'POST', 'http://h1.example/v1/internal/cluster/join-options', {}, { token: `PGEDGE-${'0'.repeat(64)}-${'0'.repeat(32)}`, host_id: 'h2' })).json.name).toBe('invalid_join_token')
  })

  it('lets a viewer read but not write, nor read credentials', async () => {
    const viewer = { authorization: `Bearer ${await token('viewer')}` }
    expect((await send(tlsApp, 'GET', 'http://h1.example/v1/hosts', viewer)).status).toBe(200)
    expect((await send(tlsApp, 'GET', 'http://h1.example/metrics', viewer)).status).toBe(200)
    for (const [method, path] of [['POST', '/v1/databases'], ['DELETE', '/v1/hosts/host-1'], ['GET', '/v1/cluster/join-token'], ['GET', '/v1/cluster/init'], ['GET', '/v1/tokens'], ['POST', '/v1/tokens']] as const) {
      const res = await send(tlsApp, method, `http://h1.example${path}`, viewer, method === 'POST' ? { name: 'x', role: 'operator' } : undefined)
      expect(res.status, `${method} ${path}`).toBe(403)
      expect(res.json).toEqual({ name: 'forbidden', message: 'a viewer may only read' })
    }
  })

  it('lets an operator do everything; lists tokens without secrets; a revoked or expired token is 401 on every request after', async () => {
    const secret = await token('operator')
    const operator = { authorization: `Bearer ${secret}` }
    expect((await send(tlsApp, 'GET', 'http://h1.example/v1/cluster/join-token', operator)).status).toBe(200)
    const list = await send(tlsApp, 'GET', 'http://h1.example/v1/tokens', operator)
    expect(list.status).toBe(200)
    expect(JSON.stringify(list.json)).not.toContain(secret.slice(22))
    expect(JSON.stringify(list.json)).not.toMatch(/sha256/)
    const id = secret.split('_')[1]
    expect(list.json.tokens.map((t: { id: string }) => t.id)).toContain(id)
    // The document holds only the hash.
    expect(JSON.stringify(api.host.state.doc.api_tokens)).not.toContain(secret.slice(22))
    expect((await send(tlsApp, 'DELETE', `http://h1.example/v1/tokens/${id}`, operator)).status).toBe(204)
    expect((await send(tlsApp, 'GET', 'http://h1.example/v1/hosts', operator)).status).toBe(401)

    const shortLived = await token('operator', '1s')
    expect((await send(tlsApp, 'GET', 'http://h1.example/v1/hosts', { authorization: `Bearer ${shortLived}` })).status).toBe(200)
    await new Promise(resolve => setTimeout(resolve, 2100))
    expect((await send(tlsApp, 'GET', 'http://h1.example/v1/hosts', { authorization: `Bearer ${shortLived}` })).status).toBe(401)
  })

  it('refuses malformed token requests in the anchor shape', async () => {
    expect((await send(api.app, 'POST', 'http://localhost/v1/tokens', {}, { name: 'x', role: 'admin' })).status).toBe(400)
    expect((await send(api.app, 'POST', 'http://localhost/v1/tokens', {}, { name: 'x', role: 'viewer', expires_in: '1y' })).status).toBe(400)
    expect((await send(api.app, 'DELETE', 'http://localhost/v1/tokens/0123456789abcdef')).json.name).toBe('not_found')
  })
})

describe('join tokens', () => {
  it('expire, and can be revoked one by one or all at once', async () => {
    const short = await send(api.app, 'GET', 'http://localhost/v1/cluster/join-token?ttl=1s')
    const long = await send(api.app, 'GET', 'http://localhost/v1/cluster/join-token')
    const options = async (t: string): Promise<number> => (await send(api.app, 'POST', 'http://localhost/v1/internal/cluster/join-options', { [DOCUMENT_FORMAT_HEADER]: String(DOCUMENT_FORMAT) }, { token: t, host_id: 'host-9' })).status
    expect(await options(short.json.token)).toBe(200)
    await new Promise(resolve => setTimeout(resolve, 2100))
    expect(await options(short.json.token)).toBe(401)
    expect(await options(long.json.token)).toBe(200)
    const listed = await send(api.app, 'GET', 'http://localhost/v1/cluster/join-tokens')
    expect(listed.json.join_tokens.length).toBeGreaterThanOrEqual(2)
    expect(JSON.stringify(listed.json)).not.toContain(long.json.token.slice(72))
    const revoked = await send(api.app, 'DELETE', 'http://localhost/v1/cluster/join-tokens')
    expect(revoked.json.revoked).toBeGreaterThanOrEqual(2)
    expect(await options(long.json.token)).toBe(401)
    const one = await send(api.app, 'GET', 'http://localhost/v1/cluster/join-token')
    const id = (await send(api.app, 'GET', 'http://localhost/v1/cluster/join-tokens')).json.join_tokens[0].id
    expect((await send(api.app, 'DELETE', `http://localhost/v1/cluster/join-tokens/${id}`)).json).toEqual({ revoked: 1 })
    expect(await options(one.json.token)).toBe(401)
  })

  it('refuses a bad ttl', async () => {
    expect((await send(api.app, 'GET', 'http://localhost/v1/cluster/join-token?ttl=forever')).status).toBe(400)
  })
})
