import type { PgmeshClient } from './client.js'
import { type ApiTask, isFinished, type TaskLogEntry, type TaskRef } from './types.js'

export interface FollowOptions {
  /** Called with each batch of new entries, oldest first. */
  onEntries: (entries: TaskLogEntry[]) => void
  /** Called after each poll with the task's status. */
  onStatus?: (status: string) => void
  intervalMs?: number
  /** Stops following (not the task); the promise then rejects with the signal's reason. */
  signal?: AbortSignal
}

/**
 * Follows a task's log until the task finishes: polls the log with `after_entry_id` (the anchor's way, any host
 * serves every host's entries), hands over each new entry once, and returns the finished task.
 */
export async function followTask (client: PgmeshClient, ref: TaskRef, options: FollowOptions): Promise<ApiTask> {
  const interval = options.intervalMs ?? 500
  let after: string | undefined
  for (;;) {
    options.signal?.throwIfAborted()
    const log = await client.taskLog(ref, after === undefined ? {} : { afterEntryId: after })
    options.signal?.throwIfAborted()
    if (log.entries.length > 0) options.onEntries(log.entries)
    after = log.last_entry_id ?? after
    options.onStatus?.(log.task_status)
    if (isFinished(log.task_status)) return await client.task(ref)
    await sleep(interval, options.signal)
  }
}

async function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(done, ms)
    function done (): void {
      signal?.removeEventListener('abort', abort)
      resolve()
    }
    function abort (): void {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    signal?.addEventListener('abort', abort, { once: true })
  })
}
