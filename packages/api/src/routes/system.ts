import { arch } from 'node:os'
import { createRoute, type OpenAPIHono } from '@hono/zod-openapi'
import { REVISION, REVISION_TIME, VERSION } from '@pgmesh/host'
import type { ApiComponents } from '../components.js'
import { VersionSchema } from '../schemas.js'

export function registerSystemRoutes (app: OpenAPIHono, { membership, metrics }: Pick<ApiComponents, 'membership' | 'metrics'>): void {
  app.get('/', (c) => {
    c.header('Link', '</v1/openapi.json>; rel="service-desc"')
    return c.body(null, 204)
  })

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/version',
    tags: ['System'],
    operationId: 'get-version',
    summary: 'Version of this server (works before the cluster is initialized)',
    responses: { 200: { description: 'Version', content: { 'application/json': { schema: VersionSchema } } } }
  }), c => c.json({ version: VERSION, revision: REVISION, revision_time: REVISION_TIME, arch: arch() }, 200))

  app.get('/livez', c => c.json({ status: 'ok' }))
  app.get('/readyz', c => c.json({ status: 'ready', initialized: membership.initialized }))
  app.get('/metrics', async (c) => {
    c.header('content-type', metrics.registry.contentType)
    return c.body(await metrics.registry.metrics())
  })
}
