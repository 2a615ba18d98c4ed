import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi'
import type { ApiComponents } from '../components.js'
import { ApiTokenSchema, CreateApiTokenSchema, errorResponses } from '../schemas.js'

/** Bearer tokens of the API (pgmesh; the anchor has none): created, listed and revoked by operators. */
export function registerTokenRoutes (app: OpenAPIHono, { apiTokens }: Pick<ApiComponents, 'apiTokens'>): void {
  app.openapi(createRoute({
    method: 'post',
    path: '/v1/tokens',
    tags: ['Tokens'],
    operationId: 'create-token',
    summary: 'Creates a bearer token; its secret (`token`) is in this answer only',
    request: { body: { required: true, content: { 'application/json': { schema: CreateApiTokenSchema } } } },
    responses: {
      201: { description: 'The token, with its secret', content: { 'application/json': { schema: ApiTokenSchema.extend({ token: z.string() }) } } },
      ...errorResponses(400, 401, 403, 409)
    }
  }), async (c) => {
    const body = c.req.valid('json')
    const { token, secret } = await apiTokens.create({ name: body.name, role: body.role, ...(body.expires_in === undefined ? {} : { expires_in: body.expires_in }) })
    return c.json({ ...token, token: secret }, 201)
  })

  app.openapi(createRoute({
    method: 'get',
    path: '/v1/tokens',
    tags: ['Tokens'],
    operationId: 'list-tokens',
    summary: 'Every bearer token (never their secrets)',
    responses: {
      200: { description: 'Tokens', content: { 'application/json': { schema: z.object({ tokens: z.array(ApiTokenSchema) }) } } },
      ...errorResponses(401, 403, 409)
    }
  }), c => c.json({ tokens: apiTokens.list() }, 200))

  app.openapi(createRoute({
    method: 'delete',
    path: '/v1/tokens/{id}',
    tags: ['Tokens'],
    operationId: 'revoke-token',
    summary: 'Revokes a bearer token on every host (once the document has reached it)',
    request: { params: z.object({ id: z.string().regex(/^[0-9a-f]{16}$/).openapi({ param: { name: 'id', in: 'path' } }) }) },
    responses: { 204: { description: 'Revoked' }, ...errorResponses(400, 401, 403, 404, 409) }
  }), async (c) => {
    await apiTokens.revoke(c.req.valid('param').id)
    return c.body(null, 204)
  })
}
