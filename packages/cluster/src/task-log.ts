import { EventEmitter } from 'node:events'
import { appendFile, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { newTaskId, rfc3339 } from '@pgmesh/model'

export interface TaskLogEntry {
  /** UUIDv7, so entries from several hosts sort by time. */
  id: string
  timestamp: string
  message: string
  fields?: Record<string, unknown>
  host_id: string
}

/**
 * Task log lines of the work this host did. They stay on this host (high churn has no place in the CRDT's history)
 * and every other host reads them over the mesh when asked for a task's log. Each entry, once durable, is also
 * announced (`appended`), so the host can push it to whoever follows the task.
 */
export class TaskLogStore extends EventEmitter<{ appended: [taskId: string, entry: TaskLogEntry] }> {
  constructor (private readonly dir: string, private readonly hostId: string) { super() }

  async append (taskId: string, message: string, fields?: Record<string, unknown>): Promise<TaskLogEntry> {
    const entry: TaskLogEntry = {
      id: newTaskId(),
      timestamp: rfc3339(),
      message,
      ...(fields === undefined ? {} : { fields }),
      host_id: this.hostId
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await appendFile(this.file(taskId), JSON.stringify(entry) + '\n', { mode: 0o600 })
    this.emit('appended', taskId, entry)
    return entry
  }

  async read (taskId: string): Promise<TaskLogEntry[]> {
    let text: string
    try {
      text = await readFile(this.file(taskId), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
    const entries: TaskLogEntry[] = []
    for (const line of text.split('\n')) {
      if (line === '') continue
      try { entries.push(JSON.parse(line) as TaskLogEntry) } catch { /* a torn last line after a crash */ }
    }
    return entries
  }

  private file (taskId: string): string {
    if (!/^[0-9a-f-]{36}$/.test(taskId)) throw new Error(`invalid task id ${taskId}`)
    return join(this.dir, `${taskId}.jsonl`)
  }
}
