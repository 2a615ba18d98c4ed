import { OpenAPIHono } from '@hono/zod-openapi'
import { describe, expect, it } from 'vitest'
import { CreateDatabaseRequestSchema, DatabaseSpecSchema, UpdateDatabaseRequestSchema } from './schemas.js'

/** The OpenAPI components the schemas produce, as the API package will publish them. */
function components (): Record<string, Record<string, unknown>> {
  const app = new OpenAPIHono()
  app.openAPIRegistry.register('CreateDatabaseRequest', CreateDatabaseRequestSchema)
  app.openAPIRegistry.register('UpdateDatabaseRequest', UpdateDatabaseRequestSchema)
  const document = app.getOpenAPIDocument({ openapi: '3.0.0', info: { title: 'pgmesh', version: '1' } })
  return (document.components?.schemas ?? {}) as Record<string, Record<string, unknown>>
}

describe('OpenAPI from the schemas', () => {
  it('names every spec object as a component', () => {
    expect(Object.keys(components()).sort()).toEqual([
      'BackupConfigSpec', 'BackupRepositorySpec', 'BackupScheduleSpec', 'CreateDatabaseRequest', 'DatabaseConnection',
      'DatabaseNodeSpec', 'DatabaseScripts', 'DatabaseSpec', 'DatabaseUserSpec', 'ExtraNetworkSpec', 'ExtraVolumesSpec',
      'Identifier', 'OrchestratorOpts', 'RestoreConfigSpec', 'RestoreRepositorySpec', 'SQLScript', 'ServiceSpec', 'SwarmOpts',
      'UpdateDatabaseRequest'
    ])
  })

  it('carries required fields, limits and strictness', () => {
    const spec = components().DatabaseSpec as { required: string[], additionalProperties: unknown, properties: Record<string, Record<string, unknown>> }
    expect(spec.required).toEqual(['database_name', 'nodes'])
    expect(spec.additionalProperties).toBe(false)
    expect(spec.properties.nodes).toMatchObject({ minItems: 1, maxItems: 9 })
    expect(spec.properties.database_users).toMatchObject({ maxItems: 16 })
    expect(spec.properties.postgresql_conf).toMatchObject({ maxProperties: 64 })
    expect(components().Identifier).toMatchObject({ type: 'string', minLength: 1, maxLength: 36 })
    expect(components().DatabaseNodeSpec).toMatchObject({ required: ['name', 'host_ids'], properties: { name: { pattern: '^n[0-9]+$' } } })
  })

  it('parses with the same schema the types come from', () => {
    expect(DatabaseSpecSchema.safeParse({ database_name: 'db', nodes: [{ name: 'n1', host_ids: ['h1'] }] }).success).toBe(true)
  })
})
