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
  /** The member hosts whose heartbeats this host needs relayed (`Heartbeats.unheard`). Absent from older hosts. */
  unheard?: string[]
}

export type Reachability = 'healthy' | 'unreachable' | 'unknown'

/**
 * Running totals of heartbeat traffic at the application level (one publish reaches every peer by gossip), the
 * heartbeats this host relayed because another host asked, and how many hosts its last heartbeat listed as unheard.
 */
export interface HeartbeatStats { sent: number, bytesSent: number, received: number, bytesReceived: number, relayed: number, unheard: number }

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
  /** The cluster's member host ids (this one included), for `unheard`; without it, the hosts heard from so far. */
  members?: () => Iterable<string>
  /** The peers this host has a connection to (the mesh's, unless a test says otherwise). */
  connectedPeers?: () => Iterable<string>
  /** Told of each heartbeat refused, for the host's warning log and metrics. */
  onRefused?: (peerId: string, hostId: string) => void
  logger: Logger
}

/**
 * Host liveness and observed state by gossip (never in the CRDT: it changes every second). The newest heartbeat of
 * each host replaces the previous one whole.
 *
 * Every host publishes straight to every peer, so relays only matter past a broken connection, yet relaying every
 * heartbeat made each arrive ~4 times at every host (each copy decrypted and decoded; the idle mesh's cost grew with
 * hosts × copies). So a heartbeat is relayed only when someone needs it: each heartbeat lists the members its
 * sender cannot hear (`unheard`: no connection, or silent for two intervals), and a host relays a heartbeat whose
 * author a live host lists. That covers one-way breaks too: whoever cannot hear X asks for X, whatever X hears.
 *
 * `heartbeat` fires for every heartbeat taken; `reachability` only when a host's reachability changes: `healthy` on
 * its first heartbeat and its first after a silence, `unreachable` once it has been silent for `unreachableAfterMs`
 * (a timer per host, so silence is noticed when it happens, not at the next heartbeat of someone else).
 */
export class Heartbeats<T = unknown> extends EventEmitter<{ heartbeat: [Heartbeat<T>], reachability: [hostId: string, reachability: Reachability] }> implements Startable {
  readonly intervalMs: number
  readonly unreachableAfterMs: number
  private readonly latest = new Map<string, { heartbeat: Heartbeat<T>, receivedAt: number }>()
  /** Per member never heard from: when `unheard` first saw it. */
  private readonly knownSince = new Map<string, number>()
  private readonly bootId = Math.random().toString(36).slice(2)
  private seq = 0
  private lastBeatAt: number | undefined
  readonly stats: HeartbeatStats = { sent: 0, bytesSent: 0, received: 0, bytesReceived: 0, relayed: 0, unheard: 0 }
  private timer: NodeJS.Timeout | undefined
  /** Per other host: fires when its last heartbeat becomes too old (re-armed by each heartbeat). */
  private readonly silence = new Map<string, NodeJS.Timeout>()

  constructor (private readonly mesh: Mesh, private readonly options: HeartbeatOptions<T>) {
    super()
    this.intervalMs = options.intervalMs ?? 1000
    this.unreachableAfterMs = options.unreachableAfterMs ?? 4000
    mesh.subscribe(HEARTBEAT_TOPIC, (data, from) => this.receive(data, from), { relay: 'when-asked' })
  }

  start (): void {
    this.beat()
    // After the event loop's poll phase: heartbeats that waited in sockets while this process was busy are taken
    // before the unheard list is made, or a stalled host would ask for every heartbeat to be relayed.
    this.timer = setInterval(() => { setImmediate(() => { if (this.timer !== undefined) this.beat() }) }, this.intervalMs)
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
    const now = Date.now()
    // A beat this late means this process could not listen either: its own stall is not the others' silence.
    const stalledMs = this.lastBeatAt === undefined ? 0 : Math.max(0, now - this.lastBeatAt - this.intervalMs)
    this.lastBeatAt = now
    const unheard = this.unheard(now, stalledMs)
    this.stats.unheard = unheard.length
    const heartbeat: Heartbeat<T> = {
      host_id: this.options.hostId,
      peer_id: this.mesh.peerId,
      boot_id: this.bootId,
      seq: ++this.seq,
      sent_at: Date.now(),
      observed: this.options.observe(),
      unheard
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

  /**
   * Members whose heartbeats this host needs relayed: those it has no connection to (only a relay can bring their
   * heartbeats), and those it has heard nothing from, by any path, for two intervals (a connection can go silent
   * long before libp2p closes it). Not "not heard straight from": once relays run, a relayed copy often arrives
   * before the direct one, which gossipsub then drops unseen, and the relays would keep themselves going. A member
   * known for less than two intervals is not listed yet: a starting or joining host hears nobody at first, and
   * asking for every heartbeat to be relayed until its connections are up would multiply the mesh's traffic.
   */
  unheard (now = Date.now(), stalledMs = 0): string[] {
    const members = this.options.members?.() ?? this.latest.keys()
    const connected = new Set(this.options.connectedPeers?.() ?? this.mesh.connectedPeers())
    const out: string[] = []
    for (const hostId of members) {
      if (hostId === this.options.hostId) continue
      const last = this.latest.get(hostId)
      if (last === undefined) {
        const since = this.knownSince.get(hostId)
        if (since === undefined) this.knownSince.set(hostId, now)
        else if (now - since > 2 * this.intervalMs) out.push(hostId)
      } else if (!connected.has(last.heartbeat.peer_id) || now - last.receivedAt > 2 * this.intervalMs + stalledMs) {
        out.push(hostId)
      }
    }
    return out
  }

  /** Whether a live host (heard from within the unreachable bound) lists `hostId` as unheard. */
  private wanted (hostId: string, now: number): boolean {
    for (const { heartbeat, receivedAt } of this.latest.values()) {
      if (heartbeat.host_id !== this.options.hostId && now - receivedAt <= this.unreachableAfterMs && heartbeat.unheard?.includes(hostId) === true) return true
    }
    return false
  }

  forget (hostId: string): void {
    this.latest.delete(hostId)
    this.knownSince.delete(hostId)
    clearTimeout(this.silence.get(hostId))
    this.silence.delete(hostId)
  }

  /**
   * `from`: the peer that signed the gossip message ('' when unsigned, which gossipsub's StrictSign never lets
   * through). Returns whether to relay it.
   */
  receive (data: Uint8Array, from: string): boolean {
    this.stats.received++
    this.stats.bytesReceived += data.length
    let heartbeat: Heartbeat<T>
    try {
      heartbeat = JSON.parse(new TextDecoder().decode(data)) as Heartbeat<T>
    } catch {
      return false
    }
    if (typeof heartbeat !== 'object' || heartbeat === null || typeof heartbeat.host_id !== 'string' || typeof heartbeat.seq !== 'number') return false
    if (heartbeat.unheard !== undefined && (!Array.isArray(heartbeat.unheard) || heartbeat.unheard.some(h => typeof h !== 'string'))) return false
    // A heartbeat speaks for its host only when the peer that signed it is the one bound to that host.
    const authorize = this.options.authorizeSender
    if (from === '' || heartbeat.peer_id !== from || (authorize !== undefined && !authorize(from, heartbeat.host_id))) {
      this.options.onRefused?.(from, heartbeat.host_id)
      return false
    }
    const now = Date.now()
    const previous = this.latest.get(heartbeat.host_id)?.heartbeat
    if (previous !== undefined && previous.boot_id === heartbeat.boot_id && previous.seq >= heartbeat.seq) return false
    this.record(heartbeat)
    const relay = this.wanted(heartbeat.host_id, now)
    if (relay) this.stats.relayed++
    return relay
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
