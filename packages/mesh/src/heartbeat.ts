import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import type { Mesh } from './mesh.js'
import type { Startable } from '@pgmesh/model'

export const HEARTBEAT_TOPIC = '/pgmesh/heartbeat/1'

/** What each host says about itself every interval. `observed` is that host's own observed state, replaced whole. */
export interface Heartbeat<T = unknown> {
  host_id: string
  peer_id: string
  /** Random per process start, so a restarted host's seq numbers don't look stale. */
  boot_id: string
  seq: number
  sent_at: number
  observed: T
}

export type Reachability = 'healthy' | 'unreachable' | 'unknown'

/** Running totals of heartbeat traffic at the application level (one publish reaches every peer by gossip). */
export interface HeartbeatStats { sent: number, bytesSent: number, received: number, bytesReceived: number }

export interface HeartbeatOptions<T> {
  hostId: string
  intervalMs?: number
  /** A host whose last heartbeat is older than this is unreachable. */
  unreachableAfterMs?: number
  observe: () => T
  /**
   * Whether the authenticated gossip sender (a peer id) speaks for this host id: the host's binding in the cluster
   * document, passed in by the host. Without it every signed heartbeat is taken (tests of the mesh alone).
   */
  authorizeSender?: (peerId: string, hostId: string) => boolean
  /** Told of each heartbeat refused, for the host's warning log and metrics. */
  onRefused?: (peerId: string, hostId: string) => void
  logger: Logger
}

/**
 * Host liveness and observed state by gossip (never in the CRDT: it changes every second). The newest heartbeat of
 * each host replaces the previous one whole. `heartbeat` fires for every heartbeat taken; `reachability` only when a
 * host's reachability changes: `healthy` on its first heartbeat and its first after a silence, `unreachable` once it
 * has been silent for `unreachableAfterMs` (a timer per host, so silence is noticed when it happens, not at the next
 * heartbeat of someone else).
 */
export class Heartbeats<T = unknown> extends EventEmitter<{ heartbeat: [Heartbeat<T>], reachability: [hostId: string, reachability: Reachability] }> implements Startable {
  readonly intervalMs: number
  readonly unreachableAfterMs: number
  private readonly latest = new Map<string, { heartbeat: Heartbeat<T>, receivedAt: number }>()
  private readonly bootId = Math.random().toString(36).slice(2)
  private seq = 0
  readonly stats: HeartbeatStats = { sent: 0, bytesSent: 0, received: 0, bytesReceived: 0 }
  private timer: NodeJS.Timeout | undefined
  /** Per other host: fires when its last heartbeat becomes too old (re-armed by each heartbeat). */
  private readonly silence = new Map<string, NodeJS.Timeout>()

  constructor (private readonly mesh: Mesh, private readonly options: HeartbeatOptions<T>) {
    super()
    this.intervalMs = options.intervalMs ?? 1000
    this.unreachableAfterMs = options.unreachableAfterMs ?? 4000
    mesh.subscribe(HEARTBEAT_TOPIC, (data, from) => { this.receive(data, from) })
  }

  start (): void {
    this.beat()
    this.timer = setInterval(() => { this.beat() }, this.intervalMs)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    for (const t of this.silence.values()) clearTimeout(t)
    this.silence.clear()
  }

  /** Sends a heartbeat now (also used right after our observed state changed). */
  beat (): void {
    const heartbeat: Heartbeat<T> = {
      host_id: this.options.hostId,
      peer_id: this.mesh.peerId,
      boot_id: this.bootId,
      seq: ++this.seq,
      sent_at: Date.now(),
      observed: this.options.observe()
    }
    this.record(heartbeat)
    const data = new TextEncoder().encode(JSON.stringify(heartbeat))
    this.stats.sent++
    this.stats.bytesSent += data.length
    void this.mesh.publish(HEARTBEAT_TOPIC, data).catch((err: unknown) => {
      this.options.logger.debug({ err }, 'heartbeat publish failed')
    })
  }

  get (hostId: string): { heartbeat: Heartbeat<T>, receivedAt: number } | undefined {
    return this.latest.get(hostId)
  }

  reachability (hostId: string, now = Date.now()): Reachability {
    if (hostId === this.options.hostId) return 'healthy'
    const last = this.latest.get(hostId)
    if (last === undefined) return 'unknown'
    return now - last.receivedAt > this.unreachableAfterMs ? 'unreachable' : 'healthy'
  }

  forget (hostId: string): void {
    this.latest.delete(hostId)
    clearTimeout(this.silence.get(hostId))
    this.silence.delete(hostId)
  }

  /** `from`: the peer that signed the gossip message ('' when unsigned, which gossipsub's StrictSign never lets through). */
  receive (data: Uint8Array, from: string): void {
    this.stats.received++
    this.stats.bytesReceived += data.length
    let heartbeat: Heartbeat<T>
    try {
      heartbeat = JSON.parse(new TextDecoder().decode(data)) as Heartbeat<T>
    } catch {
      return
    }
    if (typeof heartbeat !== 'object' || heartbeat === null || typeof heartbeat.host_id !== 'string' || typeof heartbeat.seq !== 'number') return
    // A heartbeat speaks for its host only when the peer that signed it is the one bound to that host.
    const authorize = this.options.authorizeSender
    if (from === '' || heartbeat.peer_id !== from || (authorize !== undefined && !authorize(from, heartbeat.host_id))) {
      this.options.onRefused?.(from, heartbeat.host_id)
      return
    }
    const previous = this.latest.get(heartbeat.host_id)?.heartbeat
    if (previous !== undefined && previous.boot_id === heartbeat.boot_id && previous.seq >= heartbeat.seq) return
    this.record(heartbeat)
  }

  private record (heartbeat: Heartbeat<T>): void {
    const now = Date.now()
    const self = heartbeat.host_id === this.options.hostId
    const before = self ? 'healthy' : this.reachability(heartbeat.host_id, now)
    this.latest.set(heartbeat.host_id, { heartbeat, receivedAt: now })
    if (!self) this.watchSilence(heartbeat.host_id)
    this.emit('heartbeat', heartbeat)
    if (before !== 'healthy') this.emit('reachability', heartbeat.host_id, 'healthy')
  }

  /** (Re-)arms the host's silence timer: one timer per host, refreshed rather than replaced at every heartbeat. */
  private watchSilence (hostId: string): void {
    const armed = this.silence.get(hostId)
    if (armed !== undefined) {
      armed.refresh()
      return
    }
    const fire = (): void => {
      this.silence.delete(hostId)
      const last = this.latest.get(hostId)
      if (last === undefined) return
      // 1 ms past the bound, so reachability() already says unreachable when the event is out.
      const left = last.receivedAt + this.unreachableAfterMs + 1 - Date.now()
      if (left > 0) {
        const again = setTimeout(fire, left)
        again.unref()
        this.silence.set(hostId, again)
        return
      }
      this.emit('reachability', hostId, 'unreachable')
    }
    const timer = setTimeout(fire, this.unreachableAfterMs + 1)
    timer.unref()
    this.silence.set(hostId, timer)
  }
}
