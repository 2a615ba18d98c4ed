import type { TaskLogEntry, TaskLogStore } from '@pgmesh/cluster'
import type { Mesh } from '@pgmesh/mesh'
import type { Logger } from 'pino'

const TASK_LOG_PROTOCOL = '/pgmesh/task-log/1.0.0'
const PEER_ANSWER_MS = 2000

/** Answers other hosts asking for the log lines this host holds of a task; `admit` false: a removed host, refused. */
export function serveTaskLogs (mesh: Mesh, store: TaskLogStore, admit: (peerId: string) => boolean = () => true): void {
  mesh.handle(TASK_LOG_PROTOCOL, async (channel, remotePeer) => {
    if (!admit(remotePeer)) {
      channel.abort(new Error('peer not admitted'))
      return
    }
    const request = JSON.parse(new TextDecoder().decode(await channel.read())) as { task_id?: unknown }
    const entries = typeof request.task_id === 'string' ? await store.read(request.task_id).catch(() => []) : []
    await channel.write(new TextEncoder().encode(JSON.stringify(entries)))
    await channel.close()
  })
}

/**
 * Log entries other hosts hold for a task: asks every connected host, briefly, and skips those that don't answer.
 * A host answers only for itself: entries whose `host_id` is not the answering peer's host are dropped.
 */
export async function readPeerTaskLogs (
  mesh: Mesh | undefined, taskId: string, log: Logger,
  authorizeSender: (peerId: string, hostId: string) => boolean, onRefused: (peerId: string, hostId: string) => void
): Promise<TaskLogEntry[]> {
  if (mesh === undefined) return []
  const answers = await Promise.all(mesh.connectedPeers().map(async (peer) => {
    try {
      const channel = await mesh.open(peer, TASK_LOG_PROTOCOL, AbortSignal.timeout(PEER_ANSWER_MS))
      await channel.write(new TextEncoder().encode(JSON.stringify({ task_id: taskId })))
      const reply = await Promise.race([channel.read(), sleep(PEER_ANSWER_MS).then(() => { throw new Error('timeout') })])
      await channel.close().catch(() => {})
      const entries = JSON.parse(new TextDecoder().decode(reply)) as unknown
      if (!Array.isArray(entries)) return []
      return (entries as TaskLogEntry[]).filter((entry) => {
        const ok = typeof entry === 'object' && entry !== null && typeof entry.host_id === 'string' && authorizeSender(peer, entry.host_id)
        if (!ok) onRefused(peer, String((entry as Partial<TaskLogEntry> | null)?.host_id))
        return ok
      })
    } catch (err) {
      log.debug({ peer, err: (err as Error).message }, 'could not read task log from peer')
      return []
    }
  }))
  return answers.flat()
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
