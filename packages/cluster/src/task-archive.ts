import { appendFileSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { isTerminalTaskStatus, type Task } from '@pgmesh/model'

/** How long a finished task stays in the cluster document before a compaction moves it to the archive. */
export const TASK_RETENTION_MS = 30 * 24 * 3600 * 1000

/**
 * Finished task records a document compaction moved out of the document. No replication: a finished task never
 * changes again, and every host that moves to the new generation held its frontier, so each computes the same set
 * from its own copy of the document (`pruneFinishedTasks`) and keeps it here, append-only (one JSON record a line).
 * Read whole into memory on first use, as the document was.
 */
export class TaskArchive {
  private tasks: Map<string, Task> | undefined

  constructor (private readonly file: string) {}

  get (taskId: string): Task | undefined {
    return this.load().get(taskId)
  }

  all (): IterableIterator<Task> {
    return this.load().values()
  }

  get size (): number {
    return this.load().size
  }

  /** Appends records (those already here are skipped) and syncs them before returning. */
  add (records: readonly Task[]): void {
    const tasks = this.load()
    const fresh = records.filter(t => !tasks.has(t.task_id))
    if (fresh.length === 0) return
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 })
    appendFileSync(this.file, fresh.map(t => JSON.stringify(t) + '\n').join(''), { mode: 0o600 })
    const fd = openSync(this.file, 'r')
    try { fsyncSync(fd) } finally { closeSync(fd) }
    for (const t of fresh) tasks.set(t.task_id, t)
  }

  private load (): Map<string, Task> {
    if (this.tasks !== undefined) return this.tasks
    const tasks = new Map<string, Task>()
    let text = ''
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    for (const line of text.split('\n')) {
      if (line === '') continue
      try {
        const t = JSON.parse(line) as Task
        tasks.set(t.task_id, t)
      } catch { /* a torn last line after a crash: the compaction that wrote it is redone */ }
    }
    this.tasks = tasks
    return tasks
  }
}

/**
 * The compaction's prune (see `startGeneration` in @pgmesh/state): removes from the document's content the tasks that
 * finished more than `TASK_RETENTION_MS` before the frontier's time, except a database's current task and a child
 * of a task still open (readers follow those). Deterministic, so every host's genesis is the same. Returns them.
 */
export function pruneFinishedTasks (content: Record<string, unknown>, frontierAt: number, retentionMs = TASK_RETENTION_MS): Task[] {
  const tasks = content.tasks as Record<string, Task> | undefined
  if (tasks === undefined) return []
  const cutoff = frontierAt - retentionMs
  const current = new Set(Object.values((content.databases ?? {}) as Record<string, { task_id?: string }>).map(d => d.task_id))
  const moved: Task[] = []
  for (const [id, task] of Object.entries(tasks)) {
    if (!isTerminalTaskStatus(task.status) || task.completed_at === undefined || Date.parse(task.completed_at) >= cutoff) continue
    if (current.has(id)) continue
    const parent = task.parent_id === undefined ? undefined : tasks[task.parent_id]
    if (parent !== undefined && !isTerminalTaskStatus(parent.status)) continue
    moved.push(task)
  }
  for (const t of moved) delete tasks[t.task_id]
  return moved
}
