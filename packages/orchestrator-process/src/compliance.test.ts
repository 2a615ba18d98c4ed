// The Orchestrator compliance suite against real PostgreSQL run from this host's binaries (as root: as `postgres`).
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { orchestratorCompliance } from '@pgmesh/orchestrator-compliance'
import { pino } from 'pino'
import { ProcessOrchestrator } from './process-orchestrator.js'

orchestratorCompliance('process orchestrator (real PostgreSQL)', async () => {
  const dataDir = await mkdtemp('/tmp/pgmesh-compliance-')
  await chmod(dataDir, 0o755) // the postgres OS user must traverse it when the tests run as root
  // Replicas clone from 127.0.0.1, which pg_hba admits the superuser from by password only.
  const orchestrator = await ProcessOrchestrator.open({ dataDir, logger: pino({ level: 'silent' }), superviseIntervalMs: 100, superuserPassword: () => 'compliance-superuser-password' })
  return {
    orchestrator,
    replicaOrchestrator: orchestrator,
    baseSpec: { listenAddresses: ['127.0.0.1'], peerAddresses: ['127.0.0.1'] },
    primaryHost: '127.0.0.1',
    replicaHost: '127.0.0.1',
    monitorIntervalMs: 100,
    teardown: async () => {
      await orchestrator.close()
      // Whatever a failed case left running.
      for (const instanceId of await readdir(join(dataDir, 'instances')).catch(() => [])) {
        const pid = Number((await readFile(join(dataDir, 'instances', instanceId, 'pgdata', 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0])
        if (pid > 0) process.kill(pid, 'SIGKILL')
      }
      await rm(dataDir, { recursive: true, force: true })
    }
  }
})
