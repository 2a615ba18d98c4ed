import { describe, expect, it } from 'vitest'
import { specWithoutHost } from './host-removal.js'

const spec = {
  database_name: 'app',
  nodes: [
    { name: 'n1', host_ids: ['host-1', 'host-3'] },
    { name: 'n2', host_ids: ['host-2'] },
    { name: 'n3', host_ids: ['host-3'] },
    { name: 'n4', host_ids: ['host-2'], source_node: 'n3' }
  ],
  postgresql_conf: { work_mem: '8MB' }
}
/** Each node's primary on its first host, as at create. */
const firstHost = (_node: string, hostIds: readonly string[]): string | undefined => hostIds[0]

describe('specWithoutHost', () => {
  it('is undefined for a spec that does not name the host', () => {
    expect(specWithoutHost(spec, 'host-9', firstHost)).toBeUndefined()
  })

  it('removes a node whose only host it was, drops a replica from host_ids, and leaves everything else', () => {
    const edit = specWithoutHost(spec, 'host-3', firstHost)
    expect(edit).toEqual({
      spec: {
        database_name: 'app',
        // n4 copied from n3, which is gone: it falls back to the first remaining node, as with no source.
        nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n4', host_ids: ['host-2'] }],
        postgresql_conf: { work_mem: '8MB' }
      },
      removedNodes: ['n3'],
      shrunkNodes: ['n1'],
      awaitingFailover: []
    })
    // The input is not touched.
    expect(spec.nodes[0]?.host_ids).toEqual(['host-1', 'host-3'])
  })

  it('waits for a failover while the node\'s primary is on the host, and not once a replica serves', () => {
    const onHost1 = specWithoutHost(spec, 'host-1', firstHost)
    expect(onHost1?.awaitingFailover).toEqual(['n1'])
    expect(onHost1?.spec?.nodes).toContainEqual({ name: 'n1', host_ids: ['host-3'] })
    const failedOver = specWithoutHost(spec, 'host-1', (node, hostIds) => node === 'n1' ? 'host-3' : hostIds[0])
    expect(failedOver?.awaitingFailover).toEqual([])
    // Recorded elsewhere but not serving yet (the replica is still being promoted): still waiting.
    expect(specWithoutHost(spec, 'host-1', () => undefined)?.awaitingFailover).toEqual(['n1'])
  })

  it('leaves no spec when every node was on the host, and drops the host from services', () => {
    const lone = { database_name: 'app', nodes: [{ name: 'n1', host_ids: ['host-2'] }] }
    expect(specWithoutHost(lone, 'host-2', firstHost)).toEqual({ spec: undefined, removedNodes: ['n1'], shrunkNodes: [], awaitingFailover: [] })
    const withServices = {
      ...spec,
      services: [{ service_id: 'mcp', host_ids: ['host-2', 'host-1'] }, { service_id: 'rest', host_ids: ['host-2'] }]
    }
    expect(specWithoutHost(withServices, 'host-2', firstHost)?.spec?.services).toEqual([{ service_id: 'mcp', host_ids: ['host-1'] }])
  })
})
