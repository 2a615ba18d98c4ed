import { basebackupArgs, replicaSlotExists, type StandbyOf } from '@pgmesh/orchestrator'
import type Docker from 'dockerode'
import type { Logger } from 'pino'
import { removeCloneContainer } from './swarm-docker.js'
import { cloneContainerSpec, CONTAINER_PATHS } from './task-spec.js'

/** The instance a clone is for: its labels, image and data directory (bind-mounted into the clone container). */
export interface CloneInput { instanceId: string, databaseId: string, hostId: string, image: string, postgresMajor: number, dataDir: string }

/**
 * A replica's data directory: pg_basebackup in a one-shot container of the instance's own image (this host may
 * have no Postgres binaries) on the host's network, over the instance's slot on the primary (created by the clone
 * when the primary has none). A leftover from an interrupted clone is removed first.
 */
export async function cloneReplica (docker: Docker, log: Logger, input: CloneInput, primary: StandbyOf, password: string | undefined): Promise<void> {
  const started = Date.now()
  const slotExists = await replicaSlotExists(primary, log, password)
  await removeCloneContainer(docker, input.instanceId)
  const container = await docker.createContainer(cloneContainerSpec({
    ...input,
    basebackupArgs: basebackupArgs(primary, CONTAINER_PATHS.pgdata, slotExists)
  }))
  try {
    await container.start()
    const { StatusCode: code } = await container.wait() as { StatusCode: number }
    if (code !== 0) {
      const output = (await container.logs({ stdout: true, stderr: true, tail: 20 })).toString().trim()
      throw new Error(`cloning ${input.instanceId} from ${primary.host}:${primary.port} failed (exit ${code}): ${output}`)
    }
  } finally {
    await container.remove({ force: true }).catch(() => undefined)
  }
  log.info({ instanceId: input.instanceId, primary: `${primary.host}:${primary.port}`, ms: Date.now() - started }, 'base backup done')
}
