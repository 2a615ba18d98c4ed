import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import { rfc3339 } from '@pgmesh/model'
import type { HostView } from '@pgmesh/host'
import type { ApiComponents } from '../components.js'
import { HostSchema, Identifier, RemoveHostResponseSchema, errorResponses, humanBytes, taskResponse } from '../schemas.js'

type HostResponse = z.infer<typeof HostSchema>

export function hostResponse (view: HostView): HostResponse {
  const { record, observed } = view
  const components = observed?.components ?? {}
  return {
    id: record.id,
    orchestrator: record.orchestrator,
    data_dir: record.data_dir,
    peer_addresses: [...record.peer_addresses],
    client_addresses: [...record.client_addresses],
    api_url: record.api_url,
    cpus: record.cpus,
    memory: humanBytes(record.memory),
    status: {
      state: view.state,
      ...(view.lastSeen === undefined ? {} : { updated_at: rfc3339(view.lastSeen) }),
      ...(view.since === undefined ? {} : { since: rfc3339(view.since) }),
      components
    },
    ...(observed?.postgres_versions?.default === undefined ? {} : { default_pgedge_version: observed.postgres_versions.default }),
    ...(observed?.postgres_versions === undefined ? {} : { supported_pgedge_versions: observed.postgres_versions.supported }),
    ...(observed === undefined ? {} : { version: observed.version })
  }
}

const HostIdParam = z.object({ host_id: Identifier.openapi({ param: { name: 'host_id', in: 'path' } }) })

export function registerHostRoutes (app: OpenAPIHono, { membership, health }: Pick<ApiComponents, 'membership' | 'health'>): void {
  app.openapi(createRoute({
    method: 'get',
    path: '/v1/hosts',
    tags: ['Host'],
    operationId: 'list-hosts',
    summary: 'Every host of the cluster with its health',
    responses: {
      200: { description: 'Hosts', content: { 'application/json': { schema: z.object({ hosts: z.array(HostSchema) }) } } },
      ...errorResponses(409, 500)
    }
  }), c => c.json({ hosts: health.hostViews().map(hostResponse) }, 200))

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/hosts/{host_id}',
    tags: ['Host'],
    operationId: 'get-host',
    summary: 'One host',
    request: { params: HostIdParam },
    responses: {
      200: { description: 'Host', content: { 'application/json': { schema: HostSchema } } },
      ...errorResponses(400, 404, 409, 500)
    }
  }), c => c.json(hostResponse(health.hostView(c.req.valid('param').host_id)), 200))

  app.openapi(createRoute({
    method: 'delete',
    path: '/v1/hosts/{host_id}',
    tags: ['Host'],
    operationId: 'remove-host',
    summary: 'Remove a host from the cluster',
    request: {
      params: HostIdParam,
      query: z.strictObject({ force: z.enum(['true', 'false']).optional().openapi({ description: 'remove even if instances are placed on it: every database spec naming it goes without it (update_database_tasks)' }) })
    },
    responses: {
      200: { description: 'Removal task', content: { 'application/json': { schema: RemoveHostResponseSchema } } },
      ...errorResponses(400, 404, 409, 500)
    }
  }), async (c) => {
    const { host_id: hostId } = c.req.valid('param')
    const force = c.req.valid('query').force === 'true'
    const { task, updateTasks } = await membership.removeHost(hostId, force)
    return c.json({ task: taskResponse(task), update_database_tasks: updateTasks.map(taskResponse) }, 200)
  })
}
