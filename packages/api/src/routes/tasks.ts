import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import type { Tasks } from '@pgmesh/cluster'
import type { Task } from '@pgmesh/model'
import { InvalidInputError, NotFoundError } from '@pgmesh/model'
import { Identifier, TaskLogSchema, TaskSchema, errorResponses, jsonResponse, taskResponse } from '../schemas.js'
import { TaskListQuery, sortOrder } from './databases.js'

export function registerTaskRoutes (app: OpenAPIHono, tasks: Tasks): void {
  app.openapi(createRoute({
    method: 'get', path: '/v1/tasks', tags: ['System'], operationId: 'list-tasks', summary: 'Tasks of every scope, newest first',
    request: { query: TaskListQuery.extend({ scope: z.enum(['database', 'host']).optional(), entity_id: Identifier.optional() }) },
    responses: { 200: jsonResponse(z.object({ tasks: z.array(TaskSchema) }), 'Tasks'), ...errorResponses(400, 409) }
  }), (c) => {
    const q = c.req.valid('query')
    if (q.entity_id !== undefined && q.scope === undefined) throw new InvalidInputError('entity_id requires scope to be set')
    const found = tasks.list({ scope: q.scope, entityId: q.entity_id, afterTaskId: q.after_task_id, limit: q.limit, sortOrder: sortOrder(q.sort_order) })
    return c.json({ tasks: found.map(taskResponse) }, 200)
  })

  const HostParam = z.object({ host_id: Identifier.openapi({ param: { name: 'host_id', in: 'path' } }) })
  const HostTaskParams = HostParam.extend({ task_id: z.uuid({ message: 'the given task ID is invalid' }).openapi({ param: { name: 'task_id', in: 'path' } }) })
  const hostTask = (hostId: string, taskId: string): Task => {
    const task = tasks.get(taskId)
    if (task === undefined || task.scope !== 'host' || task.entity_id !== hostId) throw new NotFoundError('no task found with the given ID')
    return task
  }

  app.openapi(createRoute({
    method: 'get', path: '/v1/hosts/{host_id}/tasks', tags: ['Host'], operationId: 'list-host-tasks', summary: 'Tasks of a host, newest first',
    request: { params: HostParam, query: TaskListQuery },
    responses: { 200: jsonResponse(z.object({ tasks: z.array(TaskSchema) }), 'Tasks'), ...errorResponses(400, 409) }
  }), (c) => {
    const q = c.req.valid('query')
    const found = tasks.list({ scope: 'host', entityId: c.req.valid('param').host_id, afterTaskId: q.after_task_id, limit: q.limit, sortOrder: sortOrder(q.sort_order) })
    return c.json({ tasks: found.map(taskResponse) }, 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/hosts/{host_id}/tasks/{task_id}', tags: ['Host'], operationId: 'get-host-task', summary: 'One host task',
    request: { params: HostTaskParams },
    responses: { 200: jsonResponse(TaskSchema, 'Task'), ...errorResponses(400, 404, 409) }
  }), (c) => {
    const { host_id: hostId, task_id: taskId } = c.req.valid('param')
    return c.json(taskResponse(hostTask(hostId, taskId)), 200)
  })

  app.openapi(createRoute({
    method: 'get', path: '/v1/hosts/{host_id}/tasks/{task_id}/logs', tags: ['Host'], operationId: 'get-host-task-log', summary: 'A host task\'s log',
    request: { params: HostTaskParams, query: z.strictObject({ after_entry_id: z.uuid().optional(), limit: z.coerce.number().int().min(1).optional() }) },
    responses: { 200: jsonResponse(TaskLogSchema, 'Task log'), ...errorResponses(400, 404, 409) }
  }), async (c) => {
    const { host_id: hostId, task_id: taskId } = c.req.valid('param')
    const q = c.req.valid('query')
    return c.json(await tasks.readLog(hostTask(hostId, taskId), { afterEntryId: q.after_entry_id, limit: q.limit }), 200)
  })
}
