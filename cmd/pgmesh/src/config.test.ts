import { resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DEFAULT_COMPACTION_AFTER_CHANGES, FileConfigSchema, resolveConfig } from './config.js'

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

describe('api_limits', () => {
  it('overrides the API request limits one by one, the rest keeping their defaults', () => {
    const defaults = resolveConfig({}).apiLimits
    expect(defaults.maxConcurrentWrites).toBeGreaterThan(0)
    const limits = resolveConfig({ api_limits: { max_concurrent_writes: 8, write_rate: 5 } }).apiLimits
    expect(limits).toEqual({ ...defaults, maxConcurrentWrites: 8, writes: { ...defaults.writes, perSecond: 5 } })
    expect(FileConfigSchema.safeParse({ api_limits: { write_burst: 0 } }).success).toBe(false)
    expect(FileConfigSchema.safeParse({ api_limits: { unknown: 1 } }).success).toBe(false)
  })
})

describe('history_compaction', () => {
  it('compacts after DEFAULT_COMPACTION_AFTER_CHANGES by default, takes its own threshold, and can be turned off', () => {
    expect(resolveConfig({}).host.historyCompaction).toEqual({ afterChanges: DEFAULT_COMPACTION_AFTER_CHANGES })
    expect(resolveConfig({ history_compaction: { after_changes: 500, max_silence_ms: 60_000 } }).host.historyCompaction).toEqual({ afterChanges: 500, maxSilenceMs: 60_000 })
    expect(resolveConfig({ history_compaction: false }).host.historyCompaction).toBeUndefined()
    expect(FileConfigSchema.safeParse({ history_compaction: { after_changes: 0 } }).success).toBe(false)
  })
})

describe('lease_ms', () => {
  it('reaches the host; none by default (4 s); below 1 s or a fraction is refused with the field named', () => {
    expect(resolveConfig({}).host.leaseMs).toBeUndefined()
    expect(resolveConfig({ lease_ms: 2000 }).host.leaseMs).toBe(2000)
    expect(() => resolveConfig({ lease_ms: 500 })).toThrow(/lease_ms/)
    expect(() => resolveConfig({ lease_ms: 1500.5 })).toThrow(/lease_ms/)
  })
})

describe('client_addresses', () => {
  it('takes plain IP addresses', () => {
    expect(resolveConfig({ client_addresses: ['10.0.0.2', 'fd00::2'] }).host.clientAddresses).toEqual(['10.0.0.2', 'fd00::2'])
  })

  it('refuses a network such as 0.0.0.0/0, or a name, with a clear error', () => {
    expect(() => resolveConfig({ client_addresses: ['0.0.0.0/0'] })).toThrow(/client_addresses\[0\].*must be one IP address \(not a network or a name\)/s)
    expect(() => resolveConfig({ client_addresses: ['10.0.0.2', 'db.example.com'] })).toThrow(/client_addresses\[1\]/)
  })
})

describe('the API\'s address and security', () => {
  it('listens on loopback by default, plain HTTP, its API URL on loopback too', () => {
    const config = resolveConfig({})
    expect(config.httpAddress).toBe('127.0.0.1')
    expect(config.authMode).toBe('loopback')
    expect(config.host.apiUrl).toBe('http://127.0.0.1:3000')
    expect(config.host.tls).toEqual({ mode: 'none' })
  })

  it('refuses plain HTTP on any other address unless insecure_http is given', () => {
    expect(() => resolveConfig({ http_address: '0.0.0.0' })).toThrow(/refusing to serve plain HTTP on 0\.0\.0\.0.*--insecure-http/)
    expect(() => resolveConfig({ http_address: '10.0.0.1' })).toThrow(/refusing/)
    const insecure = resolveConfig({ http_address: '10.0.0.1', insecure_http: true })
    expect(insecure.authMode).toBe('insecure')
    expect(insecure.host.apiUrl).toBe('http://10.0.0.1:3000')
    expect(resolveConfig({ http_address: '127.0.0.2' }).authMode).toBe('loopback')
  })

  it('takes the anchor\'s http.* certificate settings, merged key by key across layers, or http.tls auto', () => {
    const configured = resolveConfig({ http: { ca_cert: '/etc/ca.crt', server_cert: '/etc/s.crt' } }, { http: { server_key: '/etc/s.key' } }, { http_address: '0.0.0.0' })
    expect(configured.host.tls).toEqual({ mode: 'configured', caCert: '/etc/ca.crt', serverCert: '/etc/s.crt', serverKey: '/etc/s.key' })
    expect(configured.authMode).toBe('tls')
    expect(configured.host.apiUrl).toMatch(/^https:\/\//)
    expect(resolveConfig({ http: { tls: 'auto' }, http_address: '0.0.0.0' }).host.tls).toEqual({ mode: 'auto' })
    expect(() => resolveConfig({ http: { ca_cert: '/etc/ca.crt' } })).toThrow(/all of http.ca_cert, http.server_cert and http.server_key/)
    expect(() => resolveConfig({ http: { tls: 'auto', ca_cert: '/etc/ca.crt' } })).toThrow(/either/)
    expect(FileConfigSchema.safeParse({ http: { tls: 'manual' } }).success).toBe(false)
  })
})

describe('manifest_path', () => {
  it('reaches the host as an absolute path, a flag winning over the file; none by default', () => {
    expect(resolveConfig({}).host.manifestPath).toBeUndefined()
    expect(resolveConfig({ manifest_path: 'versions.json' }).host.manifestPath).toBe(resolve('versions.json'))
    expect(resolveConfig({ manifest_path: '/from/file.json' }, {}, { manifest_path: '/etc/pgmesh/manifest.json' }).host.manifestPath).toBe('/etc/pgmesh/manifest.json')
  })
})
