import { describe, expect, it } from 'vitest'
import { portClaims, portIssues, type PortNeighbours } from './port-claims.js'

// host-1 and host-2 run on one machine (the local cluster); host-3 is another machine, with Docker's bridge address
// as host-2 has it.
const neighbours = (deleting: string[] = []): PortNeighbours => ({
  addresses: (hostId) => ({ 'host-1': ['127.0.0.1'], 'host-2': ['172.17.0.1', '127.0.0.1'], 'host-3': ['10.0.0.3', '172.17.0.1'] })[hostId] ?? [],
  deleting: new Set(deleting)
})

describe('portClaims', () => {
  it('claims a node\'s own port, else the database\'s, on each of its hosts; 0 and unset claim nothing', () => {
    const spec = { port: 6432, nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2'] }, { name: 'n2', host_ids: ['host-3'], port: 6433 }, { name: 'n3', host_ids: ['host-3'], port: 0 }] }
    expect(portClaims('app', spec)).toEqual([
      { databaseId: 'app', nodeName: 'n1', hostId: 'host-1', port: 6432, path: 'port' },
      { databaseId: 'app', nodeName: 'n1', hostId: 'host-2', port: 6432, path: 'port' },
      { databaseId: 'app', nodeName: 'n2', hostId: 'host-3', port: 6433, path: 'nodes[1].port' },
      { databaseId: 'app', nodeName: 'n3', hostId: 'host-3', port: 6432, path: 'port' }
    ])
    expect(portClaims('app', { nodes: [{ name: 'n1', host_ids: ['host-1'] }] })).toEqual([])
    // A merged spec may be anything.
    expect(portClaims('app', { port: 6432, nodes: [null, { name: 'n1', host_ids: [7, 'host-1'] }, 'x'] })).toEqual([
      { databaseId: 'app', nodeName: 'n1', hostId: 'host-1', port: 6432, path: 'port' }
    ])
  })
})

describe('portIssues', () => {
  it('refuses another database\'s port on the same host, and on a host sharing an address; not on another machine', () => {
    const example = portClaims('example', { port: 6432, nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-3'] }] })
    const spec = { nodes: [{ name: 'n1', host_ids: ['host-1'], port: 6432 }, { name: 'n2', host_ids: ['host-2'], port: 6432 }, { name: 'n3', host_ids: ['host-3'], port: 7000 }] }
    expect(portIssues(portClaims('app', spec), example, neighbours(['example']))).toEqual([
      { path: 'nodes[0].port', message: 'port 6432 on host host-1 is already used by node n1 of database example (being deleted)' },
      { path: 'nodes[1].port', message: 'port 6432 on host host-2 is already used by node n1 of database example (being deleted) on host host-1: both hosts listen on 127.0.0.1' },
      { path: 'nodes[1].port', message: 'port 6432 on host host-2 is also used by node n1 on host host-1: both hosts listen on 127.0.0.1' }
    ])
  })

  it('refuses a node\'s replica on a host sharing an address with its primary\'s, once per pair; leaves one host\'s duplicates to the spec rules', () => {
    const spec = { port: 6432, nodes: [{ name: 'n1', host_ids: ['host-1', 'host-2', 'host-3'] }, { name: 'n2', host_ids: ['host-3'] }] }
    expect(portIssues(portClaims('app', spec), [], neighbours())).toEqual([
      { path: 'port', message: 'port 6432 on host host-2 is also used by node n1 on host host-1: both hosts listen on 127.0.0.1' }
    ])
    expect(portIssues(portClaims('app', { port: 6432, nodes: [{ name: 'n1', host_ids: ['host-1', 'host-3'] }] }), [], neighbours())).toEqual([])
  })
})
