import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import pino from 'pino'
import { afterEach, beforeEach } from 'vitest'
import { ClusterState } from './cluster-state.js'
import { encodeChangeMeta } from './doc.js'

/**
 * For a describe block: `open(name)` opens a ClusterState (host id `name`) in a directory made for the running test;
 * after the test every one still open is closed and the directory removed. `close(state)` closes one before that
 * (to open it again, as a restart).
 */
export function statesPerTest (prefix: string): { open: (name: string) => Promise<ClusterState>, close: (state: ClusterState) => Promise<void> } {
  let dir: string
  const states: ClusterState[] = []
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), `pgmesh-${prefix}-`)) })
  afterEach(async () => {
    for (const s of states.splice(0)) await s.close()
    await rm(dir, { recursive: true, force: true })
  })
  return {
    open: async (name) => {
      const state = await ClusterState.open({ dir: join(dir, name), hostId: name, logger: pino({ level: 'silent' }) })
      states.push(state)
      return state
    },
    close: async (state) => {
      states.splice(states.indexOf(state), 1)
      await state.close()
    }
  }
}

/**
 * A cluster document as versions before bucketed collections created it (one map each for databases and tasks), for
 * tests of documents that are still flat. It arrives as a remote change, as it would from a host of that version.
 */
export function initializeFlat (state: ClusterState, clusterId: string): void {
  const meta = encodeChangeMeta({ host: 'old-version', at: Date.now(), op: 'cluster.init', entity: clusterId })
  state.applyRemote('old-version', doc => [A.change(doc, { message: meta }, d => {
    Object.assign(d, { cluster: { id: clusterId, created_at: new Date().toISOString() }, hosts: {}, databases: {}, tasks: {}, removed_peers: {}, api_tokens: {}, join_tokens: {} })
  }), undefined])
}
