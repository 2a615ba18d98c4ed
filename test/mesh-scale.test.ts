// 25 hosts on one address (loopback), control-only daemons: the mesh must carry every host's heartbeat to every
// other. Before issue 18's fix gossipsub's IP colocation penalty graylisted every peer from 15 hosts on, and
// libp2p's per-address inbound rate limit refused most of the joins' dials. Figures are in scripts/bench/hosts.ts.
// An idle control-only daemon costs about 1% of a core per peer (heartbeats through gossipsub, noise, pnet, yamux):
// 25 of them need about 6 cores, so the file runs on machines with at least 8 or when PGMESH_SCALE_TEST=1;
// packages/mesh/src/many-hosts.test.ts guards the same fault in one process everywhere.
import { cpus } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, hostStates, until } from './helpers/cluster.js'

const HOSTS = 25

describe.runIf(cpus().length >= 8 || process.env.PGMESH_SCALE_TEST === '1')(`a ${HOSTS}-host mesh on one address`, () => {
  let cluster: TestCluster
  let daemons: DaemonProcess[]

  beforeAll(async () => {
    cluster = await TestCluster.create('mesh-scale', { reconcile: false, logLevel: 'warn' })
    daemons = await cluster.initAndJoin(HOSTS)
  }, 300_000)

  afterAll(async () => { await cluster?.destroy() })

  it('every host sees every host healthy, and keeps seeing them', async () => {
    const unhealthy = async (): Promise<string[]> => {
      const out: string[] = []
      for (const d of daemons) {
        const states = await hostStates(d)
        for (let i = 1; i <= HOSTS; i++) if (states[`host-${i}`] !== 'healthy') out.push(`${d.hostId} sees host-${i} ${states[`host-${i}`] ?? 'absent'}`)
      }
      return out
    }
    await until('all hosts healthy everywhere', async () => (await unhealthy()).length === 0, 30_000, 500).catch(async () => undefined)
    expect(await unhealthy()).toEqual([])
    // Past the 4 s unreachable bound and several gossipsub score recomputations: heartbeats still arrive.
    await new Promise(resolve => setTimeout(resolve, 6000))
    expect(await unhealthy()).toEqual([])
  }, 60_000)
})
