import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import { ClusterJoinTokenSchema, ClusterSchema, Identifier, JoinDocumentRequestSchema, JoinOptionsRequestSchema, JoinOptionsSchema, errorResponses } from '../schemas.js'
import type { ApiComponents } from '../components.js'
import { hostResponse } from './hosts.js'

export function registerClusterRoutes (app: OpenAPIHono, { membership, health, state }: Pick<ApiComponents, 'membership' | 'health' | 'state'>): void {
  app.openapi(createRoute({
    method: 'get',
    path: '/v1/cluster/init',
    tags: ['Cluster'],
    operationId: 'init-cluster',
    summary: 'Initialize a new cluster on this host',
    request: { query: z.strictObject({ cluster_id: Identifier.optional() }) },
    responses: {
      200: { description: 'Join token for the new cluster', content: { 'application/json': { schema: ClusterJoinTokenSchema } } },
      ...errorResponses(400, 409, 500)
    }
  }), async (c) => {
    const { cluster_id: clusterId } = c.req.valid('query')
    return c.json(await membership.initCluster(clusterId), 200)
  })

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/cluster/join-token',
    tags: ['Cluster'],
    operationId: 'get-join-token',
    summary: 'The token other hosts join this cluster with',
    responses: {
      200: { description: 'Join token', content: { 'application/json': { schema: ClusterJoinTokenSchema } } },
      ...errorResponses(409, 500)
    }
  }), c => c.json(membership.joinToken(), 200))

  app.openapi(createRoute({
    method: 'post',
    path: '/v1/cluster/join',
    tags: ['Cluster'],
    operationId: 'join-cluster',
    summary: 'Join this host to an existing cluster; answers once joined and converged',
    request: { body: { required: true, content: { 'application/json': { schema: ClusterJoinTokenSchema } } } },
    responses: {
      204: { description: 'Joined' },
      ...errorResponses(400, 401, 409, 500)
    }
  }), async (c) => {
    const { token, server_urls: serverUrls } = c.req.valid('json')
    await membership.joinCluster(token, serverUrls)
    return c.body(null, 204)
  })

  app.openapi(createRoute({
    method: 'post',
    path: '/v1/internal/cluster/join-options',
    hide: true,
    request: { body: { required: true, content: { 'application/json': { schema: JoinOptionsRequestSchema } } } },
    responses: {
      200: { description: 'What a joining host needs', content: { 'application/json': { schema: JoinOptionsSchema } } },
      ...errorResponses(400, 401, 409)
    }
  }), (c) => {
    const { token, host_id: hostId } = c.req.valid('json')
    return c.json(membership.joinOptions(token, hostId), 200)
  })

  app.openapi(createRoute({
    method: 'post',
    path: '/v1/internal/cluster/join-document',
    hide: true,
    request: { body: { required: true, content: { 'application/json': { schema: JoinDocumentRequestSchema } } } },
    responses: {
      200: { description: 'The cluster document (Automerge save format), for a joining host to start from' },
      ...errorResponses(400, 401, 409)
    }
  }), (c) => {
    const { token } = c.req.valid('json')
    const snapshot = membership.joinDocument(token)
    return c.body(new Uint8Array(snapshot), 200, { 'content-type': 'application/octet-stream' })
  })

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/cluster',
    tags: ['Cluster'],
    operationId: 'get-cluster',
    summary: 'The cluster and its hosts',
    responses: {
      200: { description: 'Cluster', content: { 'application/json': { schema: ClusterSchema } } },
      ...errorResponses(409, 500)
    }
  }), c => c.json({
    id: state.doc.cluster?.id ?? '',
    status: { state: 'available' as const },
    hosts: health.hostViews().map(hostResponse),
    document: { heads: state.heads() }
  }, 200))
}
