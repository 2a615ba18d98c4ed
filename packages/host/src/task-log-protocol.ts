import type { TaskLogEntry, TaskLogStore } from '@pgmesh/cluster'
import type { Mesh } from '@pgmesh/mesh'
import type { Logger } from 'pino'

const TASK_LOG_PROTOCOL = '/pgmesh/task-log/1.0.0'
/** New entries as they are written, for the hosts whose browsers follow a task (the log itself is still read above). */
const TASK_LOG_TOPIC = '/pgmesh/task-log-entries/1'
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

/**
 * Every entry this host writes goes out by gossip as it is written, one message each (a task writes tens of
 * entries). Gossip may drop one (a host not yet in the topic's mesh): readers that must have them all read the log.
 */
export function announceTaskLogs (mesh: Mesh, store: TaskLogStore, log: Logger): void {
  store.on('appended', (taskId, entry) => {
    void mesh.publish(TASK_LOG_TOPIC, new TextEncoder().encode(JSON.stringify({ task_id: taskId, entry }))).catch((err: unknown) => {
      log.debug({ err: (err as Error).message }, 'task log entry not announced')
    })
  })
}

/**
 * Entries other hosts announce, handed to `deliver`. A host speaks for itself only: an entry whose `host_id` is not
 * the signing peer's host is refused, as in readPeerTaskLogs.
 */
export function receiveTaskLogs (
  mesh: Mesh, authorizeSender: (peerId: string, hostId: string) => boolean, onRefused: (peerId: string, hostId: string) => void,
  deliver: (taskId: string, entry: TaskLogEntry) => void
): void {
  mesh.subscribe(TASK_LOG_TOPIC, (data, from) => {
    const accepted = acceptTaskLogMessage(data, from, authorizeSender, onRefused)
    if (accepted !== undefined) deliver(accepted.taskId, accepted.entry)
  })
}

/** One announced entry, if it is well formed and its signer is the peer bound to its `host_id`. */
export function acceptTaskLogMessage (
  data: Uint8Array, from: string, authorizeSender: (peerId: string, hostId: string) => boolean, onRefused: (peerId: string, hostId: string) => void
): { taskId: string, entry: TaskLogEntry } | undefined {
  let message: { task_id?: unknown, entry?: Partial<TaskLogEntry> } | null
  try { message = JSON.parse(new TextDecoder().decode(data)) } catch { return undefined }
  const entry = message?.entry
  if (typeof message?.task_id !== 'string' || typeof entry !== 'object' || entry === null || typeof entry.id !== 'string' ||
    typeof entry.message !== 'string' || typeof entry.timestamp !== 'string' || typeof entry.host_id !== 'string') return undefined
  if (from === '' || !authorizeSender(from, entry.host_id)) {
    onRefused(from, entry.host_id)
    return undefined
  }
  return { taskId: message.task_id, entry: entry as TaskLogEntry }
}
