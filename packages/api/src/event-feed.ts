import type { ClusterState } from '@pgmesh/state'

/** What moved since the last event: the replicated document, the hosts' health, what hosts report of instances. */
export type ChangeKind = 'document' | 'hosts' | 'observed'

export interface EventFeedSources {
  state: Pick<ClusterState, 'on' | 'off'>
  /** A string that changes when any host's health changes. */
  hostsSignature: () => string
  /** A string that changes when what the hosts report of their instances changes. */
  observedSignature: () => string
  /** True once the server drains: streams end so the server can close. */
  isDraining?: () => boolean
}

export interface EventFeedOptions {
  /** Changes within this window go out as one event (a create writes the document dozens of times). */
  coalesceMs?: number
  /** How often health and observed state are compared (they change with time, not with an event). */
  pollMs?: number
}

export interface FeedSubscriber {
  changed: (kinds: ChangeKind[]) => void
  ended: () => void
}

/**
 * One feed per host for every browser: listens to the document and compares health and observed state only while
 * someone is subscribed, and sends a burst of changes as one event per `coalesceMs`.
 */
export class EventFeed {
  private readonly subscribers = new Set<FeedSubscriber>()
  private readonly pending = new Set<ChangeKind>()
  private flushTimer: NodeJS.Timeout | undefined
  private pollTimer: NodeJS.Timeout | undefined
  private hosts = ''
  private observed = ''
  private readonly onChange = (): void => { this.mark('document') }

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
    this.sources.state.on('change', this.onChange)
    this.pollTimer = setInterval(() => { this.poll() }, this.options.pollMs ?? 1000)
    this.pollTimer.unref()
  }

  private stop (): void {
    this.sources.state.off('change', this.onChange)
    clearInterval(this.pollTimer)
    clearTimeout(this.flushTimer)
    this.flushTimer = undefined
    this.pending.clear()
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
    if (this.flushTimer !== undefined) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      const kinds = [...this.pending]
      this.pending.clear()
      for (const s of this.subscribers) s.changed(kinds)
    }, this.options.coalesceMs ?? 250)
  }
}
