import type { TaskLogEntry } from '@pgmesh/cluster'
import type { ClusterState } from '@pgmesh/state'

/** What moved since the last event: the replicated document, the hosts' health, what hosts report of instances. */
export type ChangeKind = 'document' | 'hosts' | 'observed'

/** Task log entries as they are written, on this host and (announced by gossip) on every other. */
export interface TaskLogEntrySource {
  on: (event: 'entry', listener: (taskId: string, entry: TaskLogEntry) => void) => unknown
  off: (event: 'entry', listener: (taskId: string, entry: TaskLogEntry) => void) => unknown
}

export interface EventFeedSources {
  state: Pick<ClusterState, 'on' | 'off'>
  /** A string that changes when any host's health changes. */
  hostsSignature: () => string
  /** A string that changes when what the hosts report of their instances changes. */
  observedSignature: () => string
  /** Every task in the document with its status, compared after document changes (status changes go out whole). */
  taskStatuses?: () => Iterable<readonly [taskId: string, status: string]>
  /** A task as the API answers it, for a `task` event; undefined when it is gone. */
  task?: (taskId: string) => unknown
  taskLogEntries?: TaskLogEntrySource
  /** True once the server drains: streams end so the server can close. */
  isDraining?: () => boolean
}

export interface EventFeedOptions {
  /** Changes within this window go out as one event (a create writes the document dozens of times). */
  coalesceMs?: number
  /** How often health and observed state are compared (they change with time, not with an event). */
  pollMs?: number
}

/** A `task_log` event: the new entries of one task, oldest first, in the anchor's entry shape plus `id`. */
export interface TaskLogEvent {
  task_id: string
  /** UUIDv7 of each entry: entries of several hosts sort by it, and a client drops what it already has. */
  entries: Array<{ id: string, timestamp: string, message: string, fields: Record<string, unknown> }>
}

export interface FeedSubscriber {
  changed: (kinds: ChangeKind[]) => void
  /** A task's status changed: the task as GET returns it. */
  task?: (task: unknown) => void
  taskLog?: (event: TaskLogEvent) => void
  ended: () => void
}

/**
 * One feed per host for every browser: listens to the document and compares health and observed state only while
 * someone is subscribed, and sends a burst of changes as one event per `coalesceMs`. Task log entries and task
 * status changes are pushed as they come, so a page that follows a task never polls.
 */
export class EventFeed {
  private readonly subscribers = new Set<FeedSubscriber>()
  private readonly pending = new Set<ChangeKind>()
  private readonly pendingEntries = new Map<string, TaskLogEntry[]>()
  private flushTimer: NodeJS.Timeout | undefined
  private pollTimer: NodeJS.Timeout | undefined
  private hosts = ''
  private observed = ''
  private statuses = new Map<string, string>()
  private readonly onChange = (): void => { this.mark('document') }
  private readonly onEntry = (taskId: string, entry: TaskLogEntry): void => {
    const list = this.pendingEntries.get(taskId) ?? []
    list.push(entry)
    this.pendingEntries.set(taskId, list)
    this.scheduleFlush()
  }

  constructor (private readonly sources: EventFeedSources, private readonly options: EventFeedOptions = {}) {}

  get size (): number { return this.subscribers.size }

  subscribe (subscriber: FeedSubscriber): () => void {
    if (this.subscribers.size === 0) this.start()
    this.subscribers.add(subscriber)
    return () => {
      if (!this.subscribers.delete(subscriber)) return
      if (this.subscribers.size === 0) this.stop()
    }
  }

  private start (): void {
    this.hosts = this.sources.hostsSignature()
    this.observed = this.sources.observedSignature()
    this.statuses = new Map(this.sources.taskStatuses?.() ?? [])
    this.sources.state.on('change', this.onChange)
    this.sources.taskLogEntries?.on('entry', this.onEntry)
    this.pollTimer = setInterval(() => { this.poll() }, this.options.pollMs ?? 1000)
    this.pollTimer.unref()
  }

  private stop (): void {
    this.sources.state.off('change', this.onChange)
    this.sources.taskLogEntries?.off('entry', this.onEntry)
    clearInterval(this.pollTimer)
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    this.pending.clear()
    this.pendingEntries.clear()
    this.statuses.clear()
  }

  private poll (): void {
    if (this.sources.isDraining?.() === true) {
      for (const s of [...this.subscribers]) s.ended()
      this.subscribers.clear()
      this.stop()
      return
    }
    const hosts = this.sources.hostsSignature()
    if (hosts !== this.hosts) { this.hosts = hosts; this.mark('hosts') }
    const observed = this.sources.observedSignature()
    if (observed !== this.observed) { this.observed = observed; this.mark('observed') }
  }

  private mark (kind: ChangeKind): void {
    this.pending.add(kind)
    this.scheduleFlush()
  }

  private scheduleFlush (): void {
    if (this.flushTimer !== undefined) return
    this.flushTimer = setTimeout(() => { this.flush() }, this.options.coalesceMs ?? 250)
  }

  private flush (): void {
    this.flushTimer = undefined
    const kinds = [...this.pending]
    this.pending.clear()
    // Status changes first, then entries, then `change`: a page following a task has its news before it re-reads.
    if (kinds.includes('document')) {
      for (const task of this.changedTasks()) for (const s of this.subscribers) s.task?.(task)
    }
    for (const [taskId, entries] of this.pendingEntries) {
      entries.sort((a, b) => a.id.localeCompare(b.id))
      const event: TaskLogEvent = {
        task_id: taskId,
        entries: entries.map(e => ({ id: e.id, timestamp: e.timestamp, message: e.message, fields: { ...e.fields, host_id: e.host_id } }))
      }
      for (const s of this.subscribers) s.taskLog?.(event)
    }
    this.pendingEntries.clear()
    if (kinds.length > 0) for (const s of this.subscribers) s.changed(kinds)
  }

  /** The tasks whose status differs from the last comparison (new tasks too), as the API answers them. */
  private changedTasks (): unknown[] {
    if (this.sources.taskStatuses === undefined || this.sources.task === undefined) return []
    const now = new Map(this.sources.taskStatuses())
    const changed: unknown[] = []
    for (const [id, status] of now) {
      if (this.statuses.get(id) === status) continue
      const task = this.sources.task(id)
      if (task !== undefined) changed.push(task)
    }
    this.statuses = now
    return changed
  }
}
