// The console's files and the event stream in process: /ui is open (it holds no data) and gzipped, with a strict CSP;
// /v1/events needs an identity like every /v1 route, says which host answers, announces a document change once
// for a burst, and ends its stream when the client goes away.
import { gunzipSync } from 'node:zlib'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiFixture, requestApp, startApiFixture } from './api.fixture.js'
import { type App, createApp } from './app.js'
import { apiComponents } from './components.js'

let api: ApiFixture
let tlsApp: App

beforeAll(async () => {
  api = await startApiFixture({ clusterId: 'console' })
  tlsApp = createApp(apiComponents(api.host), { logger: pino({ level: 'silent' }), auth: { mode: 'tls' } })
})

afterAll(async () => {
  await api.stop()
})

describe('/ui', () => {
  it('serves the page, its script and stylesheet without credentials, even where the API needs them', async () => {
    for (const [path, type] of [['/ui', 'text/html'], ['/ui/app.js', 'text/javascript'], ['/ui/app.css', 'text/css']] as const) {
      const res = await requestApp(tlsApp, 'GET', `https://127.0.0.1${path}`)
      expect(res.status, path).toBe(200)
      expect(res.headers.get('content-type'), path).toContain(type)
      expect(res.headers.get('content-security-policy'), path).toContain("script-src 'self'")
    }
    expect((await requestApp(tlsApp, 'GET', 'https://127.0.0.1/v1/databases')).status).toBe(401)
    expect((await requestApp(tlsApp, 'GET', 'https://127.0.0.1/ui/nothing.js')).status).toBe(404)
  })

  it('gzips for browsers that accept it and answers a matching ETag with 304', async () => {
    const plain = await api.app.request('http://localhost/ui/app.js')
    const body = Buffer.from(await plain.arrayBuffer())
    const zipped = await api.app.request('http://localhost/ui/app.js', { headers: { 'accept-encoding': 'gzip, br' } })
    expect(zipped.headers.get('content-encoding')).toBe('gzip')
    expect(gunzipSync(Buffer.from(await zipped.arrayBuffer())).equals(body)).toBe(true)
    const again = await api.app.request('http://localhost/ui/app.js', { headers: { 'if-none-match': plain.headers.get('etag') ?? '' } })
    expect(again.status).toBe(304)
  })

  it('leaves GET / as the anchor has it', async () => {
    const res = await requestApp(api.app, 'GET', 'http://localhost/')
    expect(res.status).toBe(204)
    expect(res.headers.get('link')).toBe('</v1/openapi.json>; rel="service-desc"')
  })
})

describe('/v1/events', () => {
  it('needs an identity where the API does', async () => {
    const res = await requestApp(tlsApp, 'GET', 'https://127.0.0.1/v1/events')
    expect(res.status).toBe(401)
    expect(res.json.name).toBe('unauthorized')
  })

  it('says hello with the host, sends one change for a burst of writes, and stops when the client aborts', async () => {
    const listeners = api.host.state.listenerCount('change')
    const abort = new AbortController()
    const res = await api.app.request('http://localhost/v1/events', { signal: abort.signal })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    const readUntil = async (pattern: RegExp): Promise<void> => {
      while (!pattern.test(text)) {
        const { value, done } = await reader.read()
        if (done) throw new Error(`stream ended before ${String(pattern)}: ${text}`)
        text += value
      }
    }
    await readUntil(/event: hello\ndata: \{"host_id":"host-1"\}\n\n/)
    expect(api.host.state.listenerCount('change')).toBe(listeners + 1)
    const spec = { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }
    for (let i = 0; i < 5; i++) expect((await api.call('POST', '/v1/databases', { id: `burst-${i}`, spec })).status).toBe(200)
    await readUntil(/event: change\ndata: \{"kinds":\[[^\]]*"document"/)
    // Everything written within the coalescing window arrived as one event.
    await new Promise(resolve => setTimeout(resolve, 600))
    const changes = text.match(/event: change/g) ?? []
    expect(changes.length).toBeLessThanOrEqual(2)
    abort.abort()
    await reader.cancel().catch(() => {})
    // The last subscriber gone, the feed stops listening to the document.
    await expect.poll(() => api.host.state.listenerCount('change')).toBe(listeners)
  })

  it("pushes a task's new log entries and its status change, so a page following the task never polls", async () => {
    const spec = { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-1'] }] }
    const created = await api.call('POST', '/v1/databases', { id: 'followed', spec })
    expect(created.status).toBe(200)
    const taskId: string = created.json.task.task_id
    const abort = new AbortController()
    const res = await api.app.request('http://localhost/v1/events', { signal: abort.signal })
    const reader = (res.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    const readUntil = async (pattern: RegExp): Promise<RegExpMatchArray> => {
      for (;;) {
        const m = pattern.exec(text)
        if (m !== null) return m
        const { value, done } = await reader.read()
        if (done) throw new Error(`stream ended before ${String(pattern)}: ${text}`)
        text += value
      }
    }
    await readUntil(/event: hello/)
    await api.host.document.tasks.log(taskId, 'step one of the followed task', { step: 1 })
    const [, logData] = await readUntil(/event: task_log\ndata: (.*)\n\n/)
    const logEvent = JSON.parse(logData ?? '') as { task_id: string, entries: Array<{ id: string, message: string, fields: Record<string, unknown> }> }
    expect(logEvent.task_id).toBe(taskId)
    expect(logEvent.entries).toMatchObject([{ message: 'step one of the followed task', fields: { step: 1, host_id: 'host-1' } }])
    // The id is the one the log's last_entry_id names, so a client that read the log knows what it already has.
    const read = await api.call('GET', `/v1/databases/followed/tasks/${taskId}/log`)
    expect(read.json.last_entry_id).toBe(logEvent.entries[0]?.id)

    await api.host.document.databases.settle('followed', taskId, { status: 'completed' })
    const [, taskData] = await readUntil(/event: task\ndata: (.*)\n\n/)
    expect(JSON.parse(taskData ?? '')).toMatchObject({ task_id: taskId, database_id: 'followed', status: 'completed' })
    abort.abort()
    await reader.cancel().catch(() => {})
  })
})

describe("a host's status since", () => {
  it('stays at when the state began while heartbeats go on, and is not when it was read', async () => {
    const first = await api.call('GET', '/v1/hosts/host-1')
    expect(first.json.status.state).toBe('healthy')
    const since = Date.parse(first.json.status.since)
    expect(since).toBeLessThanOrEqual(Date.parse(first.json.status.updated_at))
    await new Promise(resolve => setTimeout(resolve, 2100))
    const later = await api.call('GET', '/v1/hosts/host-1')
    expect(later.json.status.since).toBe(first.json.status.since)
    expect(Date.parse(later.json.status.updated_at)).toBeGreaterThan(since + 1000)
  })
})
