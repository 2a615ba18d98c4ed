import type { ObservedInstance } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { waitingFor } from './restores.js'

function seen (id: string, node: string, providers: string[] = []): ObservedInstance {
  return {
    id, database_id: 'db', node_name: node, host_id: 'h', state: 'available', role: 'primary', port: 5432, addresses: [], postgres_version: '15.20',
    generation: 1, updated_at: '2026-01-01T00:00:00Z', subscriptions: providers.map(p => ({ name: `sub_${p}_${node}`, provider_node: p, status: 'replicating' }))
  } as ObservedInstance
}

describe('what a node restore waits for before it restores', () => {
  it('its replicas to be gone and the other nodes to stop subscribing to it', () => {
    const cluster = [seen('db-n1-a', 'n1', ['n2']), seen('db-n1-b', 'n1'), seen('db-n2-a', 'n2', ['n1']), seen('db-n3-a', 'n3', ['n2'])]
    expect(waitingFor(cluster, 'n1', 'db-n1-a', new Set(['n1']))).toEqual(['replica db-n1-b to be removed', 'node n2 to stop subscribing to n1'])
    expect(waitingFor([seen('db-n1-a', 'n1', ['n2']), seen('db-n3-a', 'n3', ['n2'])], 'n1', 'db-n1-a', new Set(['n1']))).toEqual([])
  })

  it('not for nodes restored too: their subscriptions go with their data (else two restores would wait for each other)', () => {
    const cluster = [seen('db-n1-a', 'n1', ['n2']), seen('db-n2-a', 'n2', ['n1'])]
    expect(waitingFor(cluster, 'n1', 'db-n1-a', new Set(['n1', 'n2']))).toEqual([])
  })
})
