import { OpenAPIHono, z } from '@hono/zod-openapi'
import {
  ApiError, ClusterNotInitializedError, DecodePayloadError, PayloadTooLargeError, ServerError, ShuttingDownError, UnsupportedMediaTypeError, invalidInput,
  issuesFromZod, schemaMessage
} from '@pgmesh/model'
import { HTTPException } from 'hono/http-exception'
import type { Logger } from 'pino'
import type { ZodError } from 'zod'
import { type AuthOptions, authenticate } from './auth.js'
import { guardJsonBody, limitBody } from './body-guard.js'
import type { ApiComponents } from './components.js'
import { type ClientIdentity, type RequestLimits, requestLimits } from './request-limits.js'
import { registerClusterRoutes } from './routes/cluster.js'
import { registerDatabaseRoutes } from './routes/databases.js'
import { registerBackupRoutes, registerRestoreRoutes } from './routes/backups.js'
import { registerOperationRoutes } from './routes/operations.js'
import { registerTaskRoutes } from './routes/tasks.js'
import { registerTokenRoutes } from './routes/tokens.js'
import { registerHostRoutes } from './routes/hosts.js'
import { registerSystemRoutes } from './routes/system.js'
import { registerConsoleRoutes } from './routes/console.js'
import { registerEventRoutes } from './routes/events.js'
import { EventFeed } from './event-feed.js'
import { taskResponse } from './schemas.js'

export interface AppOptions {
  logger: Logger
  /** True once the server is draining: new requests get 503. */
  isDraining?: () => boolean
  /** Per-client rates and the bound on writes in flight (default DEFAULT_REQUEST_LIMITS). */
  limits?: RequestLimits
  /** Who a request counts against (default: its remote address). */
  clientIdentity?: ClientIdentity
  /** Who may call (default: plain HTTP on loopback, the quickstart's). */
  auth?: AuthOptions
}

export type App = OpenAPIHono

/** Paths that work before this host belongs to a cluster. */
const PRE_INIT = new Set(['/v1/version', '/v1/cluster/init', '/v1/cluster/join', '/v1/openapi.json', '/v1/internal/cluster/join-options', '/v1/internal/cluster/ca'])

/**
 * The v1 API, wire-compatible with pgEdge Control Plane. Every thrown ApiError becomes the anchor's `{name, message}`
 * response here and only here.
 */
export function createApp (components: ApiComponents, options: AppOptions): App {
  const log = options.logger
  // Route validation words its problems as validateSpec does (`must be at most 63 characters long`).
  z.config({ customError: schemaMessage })
  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) {
        const prefix = result.target === 'json' ? [] : [result.target]
        // Spec fields are reported relative to the spec, as the anchor does (`nodes[0].host_ids[1]: …`).
        throw invalidInput(issuesFromZod(result.error as ZodError, { prefix, drop: 'spec' }))
      }
    }
  })

  app.onError((err, c) => {
    if (err instanceof ApiError) {
      if (err.retryAfterSeconds !== undefined) c.header('Retry-After', String(err.retryAfterSeconds))
      return c.json(err.toJSON(), err.status)
    }
    if (err instanceof HTTPException && err.status === 400) {
      return c.json(new DecodePayloadError(`request body could not be decoded: ${err.message}`).toJSON(), 400)
    }
    // Hono's own refusals (the OpenAPI validator's media-type gate, the body limit) in the anchor's shape.
    if (err instanceof HTTPException && err.status === 415) return c.json(new UnsupportedMediaTypeError().toJSON(), 415)
    if (err instanceof HTTPException && err.status === 413) return c.json(new PayloadTooLargeError().toJSON(), 413)
    // A client gets no internal text (stack, library messages); the log has it.
    log.error({ err, path: c.req.path }, 'unhandled error')
    return c.json(new ServerError().toJSON(), 500)
  })
  app.notFound(c => c.json({ name: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` }, 404))

  app.use('*', async (c, next) => {
    if (options.isDraining?.() === true && c.req.path !== '/livez') {
      c.header('connection', 'close')
      return c.json(new ShuttingDownError().toJSON(), 503)
    }
    await next()
  })
  app.use('*', authenticate(options.auth ?? { mode: 'loopback' }, { apiTokens: components.apiTokens, doc: () => components.state.doc }))
  app.use('*', async (c, next) => {
    const path = c.req.path
    if (path.startsWith('/v1/') && !PRE_INIT.has(path) && !components.membership.initialized) throw new ClusterNotInitializedError()
    await next()
  })
  app.use('*', requestLimits(options.limits, options.clientIdentity))
  app.use('*', limitBody, guardJsonBody)

  registerSystemRoutes(app, components)
  registerClusterRoutes(app, components)
  registerHostRoutes(app, components)
  registerDatabaseRoutes(app, components)
  registerOperationRoutes(app, components.operations)
  registerBackupRoutes(app, components.backups)
  registerRestoreRoutes(app, components.restores)
  registerTaskRoutes(app, components.tasks)
  registerTokenRoutes(app, components)
  registerConsoleRoutes(app)
  const feed = new EventFeed({
    state: components.state,
    hostsSignature: () => components.health.hostViews().map(v => `${v.record.id}:${v.reachability}`).join(','),
    observedSignature: () => components.databases.list().version,
    taskStatuses: () => Object.values(components.state.doc.tasks ?? {}).map(t => [t.task_id, t.status] as const),
    task: (taskId) => { const task = components.tasks.get(taskId); return task === undefined ? undefined : taskResponse(task) },
    taskLogEntries: components.taskLogEntries,
    isDraining: options.isDraining
  })
  registerEventRoutes(app, feed, components.hostId)

  app.get('/v1/openapi.json', c => c.json(openApiDocument(app)))
  return app
}

export function openApiDocument (app: App): ReturnType<App['getOpenAPIDocument']> {
  return app.getOpenAPIDocument({
    openapi: '3.0.3',
    info: {
      title: 'pgmesh',
      version: '1',
      description: 'Leaderless control plane for distributed PostgreSQL; wire-compatible with the pgEdge Control Plane v1 API.'
    }
  })
}
