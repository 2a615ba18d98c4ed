import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import type { Operations } from '@pgmesh/cluster'
import { Identifier, TaskSchema, errorResponses, jsonResponse, taskResponse } from '../schemas.js'

const InstanceParams = z.object({
  database_id: Identifier.openapi({ param: { name: 'database_id', in: 'path' } }),
  instance_id: z.string().min(1).max(63).openapi({ param: { name: 'instance_id', in: 'path' } })
})
const NodeParams = z.object({
  database_id: Identifier.openapi({ param: { name: 'database_id', in: 'path' } }),
  node_name: z.string().min(1).openapi({ param: { name: 'node_name', in: 'path' } })
})
const ForceQuery = z.strictObject({ force: z.enum(['true', 'false']).optional() })
const TaskBody = z.object({ task: TaskSchema })
const ScheduledAt = z.iso.datetime({ offset: true }).optional().openapi({ description: 'RFC 3339; must be in the future' })

/** The anchor's instance restart/stop/start and node switchover/failover. */
export function registerOperationRoutes (app: OpenAPIHono, ops: Operations): void {
  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/instances/{instance_id}/restart', tags: ['Database'], operationId: 'restart-instance',
    summary: 'Restart an instance, now or at a scheduled time (asynchronous)',
    request: { params: InstanceParams, body: { required: true, content: { 'application/json': { schema: z.strictObject({ scheduled_at: ScheduledAt }) } } } },
    responses: { 200: jsonResponse(TaskBody, 'Restart task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, instance_id: id } = c.req.valid('param')
    return c.json({ task: taskResponse(await ops.restart(db, id, c.req.valid('json').scheduled_at)) }, 200)
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/instances/{instance_id}/stop-instance', tags: ['Database'], operationId: 'stop-instance',
    summary: 'Stop an instance and keep it stopped (asynchronous); its port is kept',
    request: { params: InstanceParams, query: ForceQuery },
    responses: { 200: jsonResponse(TaskBody, 'Stop task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, instance_id: id } = c.req.valid('param')
    return c.json({ task: taskResponse(await ops.stop(db, id)) }, 200)
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/instances/{instance_id}/start-instance', tags: ['Database'], operationId: 'start-instance',
    summary: 'Start a stopped instance (asynchronous)',
    request: { params: InstanceParams, query: ForceQuery },
    responses: { 200: jsonResponse(TaskBody, 'Start task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, instance_id: id } = c.req.valid('param')
    return c.json({ task: taskResponse(await ops.start(db, id)) }, 200)
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/nodes/{node_name}/switchover', tags: ['Database'], operationId: 'switchover-database-node',
    summary: 'Planned switchover of a node\'s primary to a replica (asynchronous)',
    request: {
      params: NodeParams,
      body: { required: false, content: { 'application/json': { schema: z.strictObject({ candidate_instance_id: z.string().min(1).max(63).optional(), scheduled_at: ScheduledAt }) } } }
    },
    responses: { 200: jsonResponse(TaskBody, 'Switchover task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, node_name: node } = c.req.valid('param')
    return c.json({ task: taskResponse(await ops.switchover(db, node, c.req.valid('json') ?? {})) }, 200)
  })

  app.openapi(createRoute({
    method: 'post', path: '/v1/databases/{database_id}/nodes/{node_name}/failover', tags: ['Database'], operationId: 'failover-database-node',
    summary: 'Manual failover of a node to a replica (asynchronous); refused on a healthy node unless skip_validation',
    request: {
      params: NodeParams,
      body: { required: false, content: { 'application/json': { schema: z.strictObject({ candidate_instance_id: z.string().min(1).max(63).optional(), skip_validation: z.boolean().optional() }) } } }
    },
    responses: { 200: jsonResponse(TaskBody, 'Failover task'), ...errorResponses(400, 404, 409, 500) }
  }), async (c) => {
    const { database_id: db, node_name: node } = c.req.valid('param')
    return c.json({ task: taskResponse(await ops.failover(db, node, c.req.valid('json') ?? {})) }, 200)
  })
}
