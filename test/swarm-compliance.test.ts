// The Orchestrator compliance suite against the Swarm orchestrator on a real 2-host Docker Swarm (scripts/testbed/tb.sh:
// each host a network namespace with its own dockerd, both managers). The orchestrators run in this process, one per
// host, talking to that host's dockerd; the primary runs on host 1 and its replica on host 2 (a replica cannot stream
// from a primary on its own host, see packages/orchestrator-swarm/README.md).
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { orchestratorCompliance } from '@pgmesh/orchestrator-compliance'
import { SwarmOrchestrator } from '@pgmesh/orchestrator-swarm'
import { pino } from 'pino'
import { expect } from 'vitest'
import { dockerSocket, hostAddress, IMAGE, startDockerTestbed, tb, testbedLeftovers } from './helpers/swarm-testbed.js'

const MONITOR_INTERVAL_MS = 500

orchestratorCompliance('swarm orchestrator (2-host Docker Swarm testbed)', async () => {
  await startDockerTestbed(2, 2)
  const root = await mkdtemp('/tmp/pgmesh-swarm-compliance-')
  await chmod(root, 0o755)
  const logger = pino({ level: process.env.PGMESH_TEST_LOG_LEVEL ?? 'silent' })
  const open = async (i: number): Promise<SwarmOrchestrator> => {
    const dataDir = `${root}/host-${i}`
    await mkdir(dataDir, { mode: 0o755 })
    return await SwarmOrchestrator.open({
      hostId: `host-${i}`, dataDir, logger, dockerHost: dockerSocket(i), defaultImage: IMAGE, monitorIntervalMs: MONITOR_INTERVAL_MS,
      // Replicas clone and stream from the other host, whose pg_hba admits the superuser by password only.
      superuserPassword: () => 'swarm-compliance-superuser-password'
    })
  }
  const [first, second] = [await open(1), await open(2)]
  return {
    orchestrator: first,
    replicaOrchestrator: second,
    // Listening everywhere in the container; port 0 is then picked free in this namespace (the hosts' are empty).
    // Peers: both hosts, and this namespace's address on the testbed (10.99.0.1), from which the orchestrators here
    // reach the primary (as a daemon inside a host's namespace would from its host's address).
    baseSpec: { listenAddresses: ['*'], peerAddresses: [hostAddress(1), hostAddress(2), '10.99.0.1'] },
    primaryHost: hostAddress(1),
    replicaHost: hostAddress(2),
    monitorIntervalMs: MONITOR_INTERVAL_MS,
    teardown: async () => {
      await first.close()
      await second.close()
      await tb('down')
      await rm(root, { recursive: true, force: true })
      expect(await testbedLeftovers()).toEqual({ netns: [], dockerds: [], cgroups: [], paths: [] })
    }
  }
}, { timeoutMs: 300_000 })
