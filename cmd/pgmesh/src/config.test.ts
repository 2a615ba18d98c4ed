import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { FileConfigSchema, resolveConfig } from './config.js'

describe('postgres_root', () => {
  it('reaches the process orchestrator as an absolute path, later layers winning (file < env < flags)', () => {
    expect(resolveConfig({}).process).toEqual({})
    expect(resolveConfig({ postgres_root: 'pg' }).process).toEqual({ postgresRoot: resolve('pg') })
    expect(resolveConfig({ postgres_root: '/from/file' }, { postgres_root: '/from/env' }, { postgres_root: '/opt/pgedge/pg16' }).process)
      .toEqual({ postgresRoot: '/opt/pgedge/pg16' })
    expect(resolveConfig({ postgres_root: '/from/file' }, {}, {}).process).toEqual({ postgresRoot: '/from/file' })
  })

  it('is refused when empty', () => {
    expect(FileConfigSchema.safeParse({ postgres_root: '' }).success).toBe(false)
  })
})
