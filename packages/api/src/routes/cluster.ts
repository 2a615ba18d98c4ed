import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import { parseDuration } from '@pgmesh/cluster'
import { DOCUMENT_FORMAT_HEADER, NotFoundError } from '@pgmesh/model'
import {
  ClusterJoinTokenSchema, ClusterSchema, Duration, Identifier, JoinDocumentRequestSchema, JoinOptionsRequestSchema, JoinRecordRequestSchema, JoinOptionsSchema, JoinTokenRecordSchema, errorResponses
} from '../schemas.js'
import type { ApiComponents } from '../components.js'
import { hostResponse } from './hosts.js'

export function registerClusterRoutes (app: OpenAPIHono, { membership, health, state, joinTokens, tls }: Pick<ApiComponents, 'membership' | 'health' | 'state' | 'joinTokens' | 'tls'>): void {
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
    summary: 'A new token other hosts join this cluster with: reusable until it expires (default 24h) or is revoked',
    request: { query: z.strictObject({ ttl: Duration.optional() }) },
    responses: {
      200: { description: 'Join token', content: { 'application/json': { schema: ClusterJoinTokenSchema } } },
      ...errorResponses(400, 401, 403, 409, 500)
    }
  }), async (c) => {
    const { ttl } = c.req.valid('query')
    return c.json(await membership.joinToken(ttl === undefined ? undefined : parseDuration(ttl, 'ttl')), 200)
  })

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/cluster/join-tokens',
    tags: ['Cluster'],
    operationId: 'list-join-tokens',
    summary: 'Outstanding join tokens (never their secrets)',
    responses: {
      200: { description: 'Join tokens', content: { 'application/json': { schema: z.object({ join_tokens: z.array(JoinTokenRecordSchema) }) } } },
      ...errorResponses(401, 403, 409)
    }
  }), c => c.json({ join_tokens: joinTokens.list() }, 200))

  app.openapi(createRoute({
    method: 'delete',
    path: '/v1/cluster/join-tokens',
    tags: ['Cluster'],
    operationId: 'revoke-join-tokens',
    summary: 'Revokes every outstanding join token',
    responses: {
      200: { description: 'How many were revoked', content: { 'application/json': { schema: z.object({ revoked: z.number() }) } } },
      ...errorResponses(401, 403, 409)
    }
  }), async c => c.json({ revoked: await joinTokens.revoke() }, 200))

  app.openapi(createRoute({
    method: 'delete',
    path: '/v1/cluster/join-tokens/{id}',
    tags: ['Cluster'],
    operationId: 'revoke-join-token',
    summary: 'Revokes one join token',
    request: { params: z.object({ id: z.string().regex(/^[0-9a-f]{16}$/).openapi({ param: { name: 'id', in: 'path' } }) }) },
    responses: {
      200: { description: 'Revoked', content: { 'application/json': { schema: z.object({ revoked: z.number() }) } } },
      ...errorResponses(400, 401, 403, 404, 409)
    }
  }), async c => c.json({ revoked: await joinTokens.revoke(c.req.valid('param').id) }, 200))

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/internal/cluster/ca',
    hide: true,
    responses: {
      200: { description: 'The cluster CA certificate (PEM), which a joiner checks against its join token', content: { 'application/json': { schema: z.object({ ca_cert: z.string() }) } } },
      ...errorResponses(404)
    }
  }), (c) => {
    const ca = tls.caCertificate
    if (ca === undefined) throw new NotFoundError('this host has no cluster CA')
    return c.json({ ca_cert: ca }, 200)
  })

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
  }), async (c) => {
    const { token, host_id: hostId, names } = c.req.valid('json')
    // Hosts of an older pgmesh send no format: 1.
    const format = Number(c.req.header(DOCUMENT_FORMAT_HEADER) ?? 1)
    return c.json(await membership.joinOptions(token, hostId, names, Number.isInteger(format) ? format : 1), 200)
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
    method: 'post',
    path: '/v1/internal/cluster/join-record',
    hide: true,
    request: { body: { required: true, content: { 'application/json': { schema: JoinRecordRequestSchema } } } },
    responses: {
      204: { description: 'The joining host\'s record is in this member\'s document' },
      ...errorResponses(400, 401, 409)
    }
  }), (c) => {
    const { token, changes } = c.req.valid('json')
    membership.acceptJoinRecord(token, Buffer.from(changes, 'base64'))
    return c.body(null, 204)
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
    document: { heads: state.heads(), generation: state.doc.generation?.number ?? 1 }
  }, 200))
}
