import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Host } from '@pgmesh/host'
import type { ObservedInstance } from '@pgmesh/model'
import pino, { type Logger } from 'pino'
import { type App, createApp } from './app.js'
import { apiComponents } from './components.js'
import type { ClientIdentity, RequestLimits } from './request-limits.js'

export interface CallResult { status: number, json: any, text: string, headers: Headers }

/**
 * One request to `app` as a client sends it, answered in process: a JSON body when given, any headers (no
 * certificate, no token unless the headers carry one); the body parsed as JSON when it is.
 */
export async function requestApp (app: App, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<CallResult> {
  const init: RequestInit = { method, headers }
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body)
    init.headers = { ...headers, 'content-type': 'application/json' }
  }
  const res = await app.request(url, init)
  const text = await res.text()
  let json: any
  try { json = text === '' ? undefined : JSON.parse(text) } catch { json = text }
  return { status: res.status, json, text, headers: res.headers }
}

/** One host (mesh on loopback, no orchestrator) with the API over it, answered in process by `app.request`. */
export interface ApiFixture {
  app: App
  host: Host
  dir: string
  /** What this host reports as its own instances (its reconciler's part); tests set it. */
  reported: ObservedInstance[]
  call: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<CallResult>
  stop: () => Promise<void>
}

export async function startApiFixture (options: {
  logger?: Logger, isDraining?: () => boolean, clusterId?: string, limits?: RequestLimits, clientIdentity?: ClientIdentity
  /** What the host record says runs its instances (default process); nothing runs them either way. */
  orchestrator?: 'process' | 'swarm'
  /** The operator's version manifest file. */
  manifestPath?: string
} = {}): Promise<ApiFixture> {
  const logger = options.logger ?? pino({ level: 'silent' })
  const dir = await mkdtemp(join(tmpdir(), 'pgmesh-api-'))
  const fixture: Partial<ApiFixture> & { reported: ObservedInstance[] } = { reported: [] }
  const host = await Host.open({
    hostId: 'host-1', dataDir: dir, apiUrl: 'http://127.0.0.1:1', listen: ['/ip4/127.0.0.1/tcp/0'], announce: [], bootstrap: [], orchestrator: options.orchestrator ?? 'process', clientAddresses: ['127.0.0.1'],
    ...(options.manifestPath === undefined ? {} : { manifestPath: options.manifestPath })
  }, logger, { ownInstances: () => fixture.reported })
  await host.start()
  const app = createApp(apiComponents(host), {
    logger,
    ...(options.isDraining === undefined ? {} : { isDraining: options.isDraining }),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
    ...(options.clientIdentity === undefined ? {} : { clientIdentity: options.clientIdentity })
  })
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<CallResult> =>
    await requestApp(app, method, path, body, headers)
  if (options.clusterId !== undefined) {
    const init = await call('GET', `/v1/cluster/init?cluster_id=${options.clusterId}`)
    if (init.status !== 200) throw new Error(`cluster init answered ${init.status}: ${init.text}`)
  }
  return Object.assign(fixture, {
    app, host, dir, call,
    stop: async () => {
      await host.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
}
