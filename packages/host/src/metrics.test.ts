import { describe, expect, it } from 'vitest'
import { HostMetrics } from './metrics.js'

const base = { peers: () => 0, knownHosts: () => 0, documentBytes: () => 0, replication: () => undefined }

describe('HostMetrics', () => {
  it("reports Automerge's WebAssembly memory as the source reads it at each scrape", async () => {
    let bytes = 1_376_256
    const metrics = new HostMetrics({ ...base, automergeMemoryBytes: () => bytes })
    expect(await metrics.registry.metrics()).toMatch(/^pgmesh_automerge_memory_bytes 1376256$/m)
    bytes = 57_999_360
    expect(await metrics.registry.metrics()).toMatch(/^pgmesh_automerge_memory_bytes 57999360$/m)
  })

  it('has no such gauge without a source (a host whose executable cannot see the memory)', async () => {
    expect(await new HostMetrics(base).registry.metrics()).not.toContain('pgmesh_automerge_memory_bytes')
  })
})
