import * as A from '@automerge/automerge'
import type { Framed, Mesh } from '@pgmesh/mesh'
import type { Logger } from 'pino'
import type { ChangeEvent, ClusterState } from './cluster-state.js'
import type { Startable } from '@pgmesh/model'

export const SYNC_PROTOCOL = '/pgmesh/doc-sync/1.0.0'
export const CHANGES_TOPIC = '/pgmesh/doc-changes/1'

export interface ReplicatorOptions {
  /** Anti-entropy period: a sync round with every peer even when nothing seems to have changed. */
  resyncMs?: number
  /**
   * How long a change that arrived by sync waits before it is relayed to the other peers (default 100 ms): long
   * enough for the same change's gossip to arrive, in which case it is not relayed at all, and for several changes
   * to go out in one round.
   */
  relayDelayMs?: number
  /**
   * Whether a peer may exchange the document with this host at all (false for a removed host's peer id that got a
   * connection through). Any other member with the cluster key may: Automerge changes are not authorized per field.
   */
  admit?: (peerId: string) => boolean
  /** Told of each sync message or gossiped change refused by `admit`. */
  onRefused?: (peerId: string) => void
  logger: Logger
}

export interface ReplicatorStats {
  syncMessagesSent: number
  syncMessagesReceived: number
  syncBytesSent: number
  syncBytesReceived: number
  gossipSent: number
  gossipReceived: number
  resyncRounds: number
  /** Relay rounds: changes that arrived by sync only, passed on to the other peers. */
  relayRounds: number
}

interface PeerSync {
  state: A.SyncState
  out: Framed | undefined
  opening: Promise<Framed> | undefined
  /** Writes to one peer go through one chain so sync messages stay in order. */
  chain: Promise<void>
}

/**
 * Replicates the cluster document with every connected host: Automerge's sync protocol over one outbound libp2p
 * stream per peer (each side writes only on the stream it opened), gossip for new local changes, and a periodic
 * resync. Gossip alone is not enough: a change published before the gossip mesh forms is lost, and Automerge then
 * queues every later change of that actor forever.
 */
export class DocReplicator implements Startable {
  readonly stats: ReplicatorStats = {
    syncMessagesSent: 0, syncMessagesReceived: 0, syncBytesSent: 0, syncBytesReceived: 0, gossipSent: 0, gossipReceived: 0, resyncRounds: 0, relayRounds: 0
  }

  private readonly peers = new Map<string, PeerSync>()
  private timer: NodeJS.Timeout | undefined
  private readonly relayDelayMs: number
  /** Changes that arrived by sync, waiting to be relayed unless their gossip arrives first; by hash, with their senders. */
  private readonly relayPending = new Map<string, Set<string>>()
  private relayTimer: NodeJS.Timeout | undefined
  /** Hashes of recently gossiped changes (bounded): gossipsub forwards those itself, so they need no relay. */
  private readonly gossipedHashes = new Set<string>()
  private readonly log: Logger
  private readonly resyncMs: number
  private readonly admit: (peerId: string) => boolean
  private readonly onRefused: (peerId: string) => void
  private stopped = false
  private readonly onChange = (event: ChangeEvent): void => { this.changed(event) }

  constructor (private readonly state: ClusterState, private readonly mesh: Mesh, options: ReplicatorOptions) {
    this.log = options.logger
    this.resyncMs = options.resyncMs ?? 2000
    this.relayDelayMs = options.relayDelayMs ?? 100
    this.admit = options.admit ?? (() => true)
    this.onRefused = options.onRefused ?? (() => {})
    mesh.handle(SYNC_PROTOCOL, async (channel, peer) => { await this.readLoop(channel, peer) })
    mesh.onPeer(SYNC_PROTOCOL, {
      connect: (peer) => { this.connected(peer) },
      disconnect: (peer) => { this.disconnected(peer) }
    })
    mesh.subscribe(CHANGES_TOPIC, (data, from) => { this.gossiped(data, from) })
  }

  /** Call after the mesh has started. */
  start (): void {
    this.state.on('change', this.onChange)
    for (const peer of this.mesh.connectedPeers()) this.connected(peer)
    this.timer = setInterval(() => {
      this.stats.resyncRounds++
      this.syncAll()
    }, this.resyncMs)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    this.state.off('change', this.onChange)
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.relayTimer !== undefined) clearTimeout(this.relayTimer)
    for (const peer of this.peers.values()) peer.out?.abort(new Error('replicator stopped'))
    this.peers.clear()
  }

  /** Sends a sync message to every known peer (only peers that lack something get one). */
  syncAll (except?: string): void {
    for (const peer of this.peers.keys()) if (peer !== except && this.admit(peer)) this.sendSync(peer)
  }

  private connected (peer: string): void {
    if (this.stopped || !this.admit(peer)) return
    // A new connection means the peer may have lost or gained anything: start its sync state afresh.
    const existing = this.peers.get(peer)
    existing?.out?.abort(new Error('reconnected'))
    this.peers.set(peer, { state: A.initSyncState(), out: undefined, opening: undefined, chain: Promise.resolve() })
    this.sendSync(peer)
  }

  private disconnected (peer: string): void {
    const existing = this.peers.get(peer)
    if (existing === undefined) return
    existing.out?.abort(new Error('disconnected'))
    this.peers.delete(peer)
  }

  private changed (event: ChangeEvent): void {
    if (event.origin === 'local') {
      const data = this.state.saveSince(event.before)
      void this.mesh.publish(CHANGES_TOPIC, data).then((recipients) => {
        if (recipients > 0) this.stats.gossipSent++
      }, (err: unknown) => { this.log.debug({ err }, 'gossip publish failed') })
      // Sync as well: gossip may not reach a peer whose gossip mesh is still forming; the sync message is empty
      // for a peer that already has everything.
      this.syncAll()
      return
    }
    // A remote change is relayed only if it came by sync and its gossip does not follow within the delay. Relaying
    // every remote change to every peer cost 2·(n-2) sync messages per change per host (quadratic in all): in a full
    // mesh the author's own gossip and sync reach everyone. A change that did come by gossip is forwarded by
    // gossipsub to hosts the author is not connected to; what gossip misses, the anti-entropy round brings.
    // `before` is empty for an adopted snapshot (a join) or a new generation: nothing for this host to pass on.
    if (event.from === undefined || event.before.length === 0) return
    for (const { hash } of A.getChangesMetaSince(this.state.doc, event.before)) {
      if (this.gossipedHashes.has(hash)) continue
      const senders = this.relayPending.get(hash) ?? new Set<string>()
      senders.add(event.from)
      this.relayPending.set(hash, senders)
    }
    if (this.relayPending.size > 0) this.relayTimer ??= setTimeout(() => { this.relay() }, this.relayDelayMs)
  }

  private relay (): void {
    this.relayTimer = undefined
    const senders = new Set<string>()
    let wanted = false
    for (const [hash, from] of this.relayPending) {
      if (this.gossipedHashes.has(hash)) continue
      wanted = true
      for (const peer of from) senders.add(peer)
    }
    this.relayPending.clear()
    if (!wanted || this.stopped) return
    this.stats.relayRounds++
    // Not back to the peers it came from; every other peer gets a sync message only if it lacks something.
    for (const peer of this.peers.keys()) if (!senders.has(peer) && this.admit(peer)) this.sendSync(peer)
  }

  private gossiped (data: Uint8Array, from: string): void {
    if (from === '' || !this.admit(from)) {
      this.onRefused(from)
      return
    }
    this.stats.gossipReceived++
    this.noteGossiped(data)
    try {
      this.state.applyRemote(from, doc => [A.loadIncremental(doc, data), undefined])
    } catch (err) {
      this.log.warn({ err, from }, 'ignored an undecodable gossiped change')
    }
  }

  /** Remembers the hash of a gossiped change (a local change is gossiped alone, as one change chunk). */
  private noteGossiped (data: Uint8Array): void {
    let hash: string | undefined
    try { hash = A.decodeChange(data).hash } catch { return }
    if (hash === undefined) return
    this.gossipedHashes.add(hash)
    // A set in insertion order: forget the oldest; a relay decision is due within relayDelayMs of arrival.
    if (this.gossipedHashes.size > 10_000) {
      for (const old of this.gossipedHashes) { this.gossipedHashes.delete(old); if (this.gossipedHashes.size <= 5_000) break }
    }
  }

  private sendSync (peer: string): void {
    const p = this.peers.get(peer)
    if (p === undefined) return
    const [nextState, message] = A.generateSyncMessage(this.state.doc, p.state)
    p.state = nextState
    if (message === null) return
    p.chain = p.chain.then(async () => {
      const out = await this.outbound(peer, p)
      await out.write(message)
      this.stats.syncMessagesSent++
      this.stats.syncBytesSent += message.length
    }).catch((err: unknown) => {
      this.log.debug({ peer, err: (err as Error).message }, 'sync send failed; resetting peer sync state')
      // Whatever was lost in flight is resent from a fresh state on the next round.
      p.out = undefined
      p.state = A.initSyncState()
    })
  }

  private async outbound (peer: string, p: PeerSync): Promise<Framed> {
    if (p.out !== undefined) return p.out
    p.opening ??= this.mesh.open(peer, SYNC_PROTOCOL, AbortSignal.timeout(5000)).finally(() => { p.opening = undefined })
    p.out = await p.opening
    return p.out
  }

  private async readLoop (channel: Framed, peer: string): Promise<void> {
    for (;;) {
      let message: Uint8Array
      try {
        message = await channel.read()
      } catch {
        return
      }
      if (this.stopped) return
      if (!this.admit(peer)) {
        this.onRefused(peer)
        channel.abort(new Error('peer not admitted'))
        return
      }
      this.stats.syncMessagesReceived++
      this.stats.syncBytesReceived += message.length
      let p = this.peers.get(peer)
      if (p === undefined) {
        // The peer's inbound stream raced ahead of our connect notification.
        this.connected(peer)
        p = this.peers.get(peer)
        if (p === undefined) return
      }
      const target = p
      try {
        this.state.applyRemote(peer, doc => {
          const [next, syncState] = A.receiveSyncMessage(doc, target.state, message)
          target.state = syncState
          return [next, undefined]
        })
      } catch (err) {
        this.log.warn({ err, peer }, 'bad sync message; resetting peer sync state')
        target.state = A.initSyncState()
      }
      this.sendSync(peer)
    }
  }
}
