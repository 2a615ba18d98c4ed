import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, beforeEach } from 'vitest'
import { ClusterState } from './cluster-state.js'

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
