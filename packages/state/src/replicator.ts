import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'
import type { Framed, Mesh } from '@pgmesh/mesh'
import type { Logger } from 'pino'
import { type ChangeEvent, type ClusterState, sameHeads } from './cluster-state.js'
import { GenerationGapError } from './generation.js'
import type { Startable } from '@pgmesh/model'
import { plainStrings } from './scalar-strings.js'

// Version 2: every message carries the sender's document generation (see "History and generations" in the README).
// A version 1 host does not speak it: a host that does not know generations must never sync with one that does.
export const SYNC_PROTOCOL = '/pgmesh/doc-sync/2.0.0'
export const CHANGES_TOPIC = '/pgmesh/doc-changes/2'

/** A sync message's kinds: Automerge's sync, the sender's whole document (for a peer on an earlier generation), a request for it. */
const KIND_SYNC = 0
const KIND_DOCUMENT = 1
const KIND_BEHIND = 2
/** kind (1 byte), generation number (4 bytes), the generation's boundary id (8 bytes). */
const HEADER = 13

/** Which document generation a document is on: its number and its boundary's id (two geneses of one number differ). */
export interface GenerationTag { number: number, id: string }

export function generationOf (doc: A.Doc<unknown>): GenerationTag {
  const generation = (doc as { generation?: { number: number, frontiers: Array<{ number: number, heads: string[] }> } }).generation
  if (generation === undefined) return { number: 1, id: '0000000000000000' }
  const boundary = generation.frontiers.find(f => f.number === generation.number)
  const id = createHash('sha256').update((boundary?.heads ?? []).join(',')).digest('hex').slice(0, 16)
  return { number: generation.number, id }
}

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
  /**
   * A peer sent its document of a later generation: the host moves to it (ClusterDocument.enterGeneration). Without
   * it this host never leaves its generation (and never syncs with the later one).
   */
  onLaterGeneration?: (doc: A.Doc<unknown>, peerId: string) => Promise<void>
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
  /** Sync messages and gossip dropped because the sender is on another generation. */
  otherGeneration: number
  /** Relay rounds: changes that arrived by sync only, passed on to the other peers. */
  relayRounds: number
}

interface PeerSync {
  state: A.SyncState
  out: Framed | undefined
  opening: Promise<Framed> | undefined
  /** Writes to one peer go through one chain so sync messages stay in order. */
  chain: Promise<void>
  /** When this host last sent the peer its whole document or asked for the peer's (at most one a few seconds). */
  lastGenerationMessage: number
}

/** What a member last said it holds: the heads of its last sync message on this host's generation. */
export interface PeerAck { heads: A.Heads, at: number }

/**
 * Replicates the cluster document with every connected host: Automerge's sync protocol over one outbound libp2p
 * stream per peer (each side writes only on the stream it opened), gossip for new local changes, and a periodic
 * resync. Gossip alone is not enough: a change published before the gossip mesh forms is lost, and Automerge then
 * queues every later change of that actor forever.
 */
export class DocReplicator implements Startable {
  readonly stats: ReplicatorStats = {
    syncMessagesSent: 0, syncMessagesReceived: 0, syncBytesSent: 0, syncBytesReceived: 0, gossipSent: 0, gossipReceived: 0, resyncRounds: 0, otherGeneration: 0, relayRounds: 0
  }

  private readonly peers = new Map<string, PeerSync>()
  private timer: NodeJS.Timeout | undefined
  private readonly relayDelayMs: number
  /** Changes that arrived by sync, waiting to be relayed unless their gossip arrives first; by hash, with their senders. */
  private readonly relayPending = new Map<string, Set<string>>()
  private relayTimer: NodeJS.Timeout | undefined
  /** Hashes of recently gossiped changes (bounded): gossipsub forwards those itself, so they need no relay. */
  private readonly gossipedHashes = new Set<string>()
  private readonly onLaterGeneration: ((doc: A.Doc<unknown>, peerId: string) => Promise<void>) | undefined
  private generation: GenerationTag
  private entering: Promise<void> | undefined
  /**
   * The later generation this host could not enter and why (its tag, `number:id`): not tried again, since retrying
   * cannot close a gap; kept for operators until this host enters a generation.
   */
  private unreachable: { tag: string, error: GenerationGapError } | undefined
  /** Heads each peer last reported on this generation, with when (`at` is now while connected). */
  private readonly acks = new Map<string, PeerAck>()
  private readonly log: Logger
  private readonly resyncMs: number
  private readonly admit: (peerId: string) => boolean
  private readonly onRefused: (peerId: string) => void
  private stopped = false
  /** True while a gossiped change is being applied (its change event is then not relayed). */
  private applyingGossip = false
  private readonly onChange = (event: ChangeEvent): void => { this.changed(event) }

  constructor (private readonly state: ClusterState, private readonly mesh: Mesh, options: ReplicatorOptions) {
    this.log = options.logger
    this.resyncMs = options.resyncMs ?? 2000
    this.relayDelayMs = options.relayDelayMs ?? 100
    this.onLaterGeneration = options.onLaterGeneration
    this.generation = generationOf(state.automergeDoc)
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
    // First among the document's listeners: a local change is published before the host's own work on it.
    this.state.prependListener('change', this.onChange)
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
    this.peers.set(peer, { state: A.initSyncState(), out: undefined, opening: undefined, chain: Promise.resolve(), lastGenerationMessage: 0 })
    this.sendSync(peer)
  }

  private disconnected (peer: string): void {
    const existing = this.peers.get(peer)
    if (existing === undefined) return
    existing.out?.abort(new Error('disconnected'))
    this.peers.delete(peer)
    const ack = this.acks.get(peer)
    if (ack !== undefined) ack.at = Date.now()
  }

  /**
   * What each peer holds, as far as this host knows: the heads of its last sync message on this generation. The
   * acknowledgement for compaction: a peer's heads are exactly what it holds, and a connected peer's are current
   * (it syncs every change), so a connected peer's `at` is now and a gone one's is when it went.
   */
  acknowledgements (): ReadonlyMap<string, PeerAck> {
    const now = Date.now()
    const out = new Map<string, PeerAck>()
    for (const [peer, ack] of this.acks) out.set(peer, { heads: ack.heads, at: this.peers.has(peer) ? now : ack.at })
    return out
  }

  /** The generation this host's document is on. */
  get currentGeneration (): GenerationTag {
    return this.generation
  }

  /**
   * Why this host cannot move to the cluster's later generation (both generations' numbers, the changes that are
   * lost, the recovery: see the error's message), from the last refusal until this host enters a generation.
   */
  get generationGap (): GenerationGapError | undefined {
    return this.unreachable?.error
  }

  private changed (event: ChangeEvent): void {
    const generation = generationOf(this.state.automergeDoc)
    if (generation.number !== this.generation.number || generation.id !== this.generation.id) {
      // A new generation: every peer's sync state and heads belong to the old one, and a gap from it is closed.
      this.generation = generation
      this.unreachable = undefined
      this.acks.clear()
      this.relayPending.clear()
      for (const p of this.peers.values()) p.state = A.initSyncState()
      this.syncAll()
      return
    }
    if (event.origin === 'local') {
      const data = this.frame(KIND_SYNC, event.bytes ?? this.state.saveSince(event.before))
      // Gossip carries a local change to every subscribed peer (flood publish); a peer it did not go to (its
      // subscription not yet known, a publish that failed) gets a sync message at once. Syncing every peer as well
      // made each change arrive twice and cost 1.5 sync messages per change per host, half of a receiver's CPU;
      // a gossip lost on the way is brought by the next anti-entropy round (resyncMs), batched with the others.
      void this.mesh.publish(CHANGES_TOPIC, data).then((recipients) => {
        if (recipients.length > 0) this.stats.gossipSent++
        const reached = new Set(recipients)
        for (const peer of this.peers.keys()) if (!reached.has(peer) && this.admit(peer)) this.sendSync(peer)
      }, (err: unknown) => {
        this.log.debug({ err }, 'gossip publish failed')
        this.syncAll()
      })
      return
    }
    // A remote change is relayed only if it came by sync and its gossip does not follow within the delay. Relaying
    // every remote change to every peer cost 2·(n-2) sync messages per change per host (quadratic in all): in a full
    // mesh the author's own gossip and sync reach everyone. A change that did come by gossip is forwarded by
    // gossipsub to hosts the author is not connected to; what gossip misses, the anti-entropy round brings.
    // `before` is empty for an adopted snapshot (a join) or a new generation: nothing for this host to pass on.
    if (event.from === undefined || event.before.length === 0) return
    const metas = A.getChangesMetaSince(this.state.automergeDoc, event.before)
    if (this.applyingGossip) {
      for (const { hash } of metas) this.noteGossiped(hash)
      return
    }
    for (const { hash } of metas) {
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
    const header = this.parse(data)
    if (header === undefined || header.number !== this.generation.number || header.id !== this.generation.id) {
      // Changes of another generation's history: merging them would mix the generations. The sender is told by sync.
      this.stats.otherGeneration++
      const p = this.peers.get(from)
      if (header !== undefined && p !== undefined) this.otherGeneration(from, p, header, new Uint8Array(0))
      return
    }
    const changes = data.subarray(HEADER)
    // `changed` notes the hashes of what the gossip brought (it runs inside applyRemote).
    this.applyingGossip = true
    const before = this.state.heads()
    try {
      this.state.applyRemote(from, (doc, options) => [A.loadIncremental(doc, changes, options), undefined])
    } catch (err) {
      this.log.warn({ err, from }, 'ignored an undecodable gossiped change')
      return
    } finally {
      this.applyingGossip = false
    }
    // Nothing new: the change came by sync first. Its hash cancels a pending relay (decoded only in this case: a
    // decode costs as much as the apply).
    if (this.relayPending.size > 0 && sameHeads(before, this.state.heads())) {
      try { const { hash } = A.decodeChange(changes); if (hash !== undefined) this.noteGossiped(hash) } catch { /* several changes or none: nothing to cancel */ }
    }
  }

  /** Remembers the hash of a gossiped change: gossipsub forwards it, so it needs no relay. */
  private noteGossiped (hash: string): void {
    this.gossipedHashes.add(hash)
    // A set in insertion order: forget the oldest; a relay decision is due within relayDelayMs of arrival.
    if (this.gossipedHashes.size > 10_000) {
      for (const old of this.gossipedHashes) { this.gossipedHashes.delete(old); if (this.gossipedHashes.size <= 5_000) break }
    }
  }

  private sendSync (peer: string): void {
    const p = this.peers.get(peer)
    if (p === undefined) return
    const [nextState, message] = A.generateSyncMessage(this.state.automergeDoc, p.state)
    p.state = nextState
    if (message === null) return
    this.write(peer, p, this.frame(KIND_SYNC, message))
  }

  private write (peer: string, p: PeerSync, message: Uint8Array): void {
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
      const header = this.parse(message)
      if (header === undefined) {
        this.log.warn({ peer }, 'ignored a malformed sync message')
        continue
      }
      if (header.number !== this.generation.number || header.id !== this.generation.id) {
        this.stats.otherGeneration++
        this.otherGeneration(peer, p, header, message.subarray(HEADER))
        continue
      }
      if (header.kind !== KIND_SYNC) continue
      const payload = message.subarray(HEADER)
      try {
        this.acks.set(peer, { heads: A.decodeSyncMessage(payload).heads, at: Date.now() })
      } catch { /* receiveSyncMessage below reports it */ }
      const target = p
      try {
        this.state.applyRemote(peer, (doc, options) => {
          const [next, syncState] = A.receiveSyncMessage(doc, target.state, payload, options)
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

  /**
   * A peer on another generation: never Automerge's sync between two generations (the genesis would merge with the
   * old history as concurrent edits). A peer behind gets this host's whole document, which it enters
   * (`onLaterGeneration`); a peer ahead is asked for its own; one on the same number from another boundary (two
   * hosts compacted from different frontiers) is refused and logged.
   */
  private otherGeneration (peer: string, p: PeerSync, header: GenerationTag & { kind: number }, payload: Uint8Array): void {
    const now = Date.now()
    if (header.number === this.generation.number) {
      if (now - p.lastGenerationMessage > 10_000) {
        p.lastGenerationMessage = now
        this.log.error({ peer, generation: header.number, ours: this.generation.id, theirs: header.id },
          'a peer is on another document of this generation (a different boundary); not syncing with it')
      }
      return
    }
    const tag = `${header.number}:${header.id}`
    // A later generation this host cannot or will not enter: nothing to ask for (asking would only fetch the document again).
    if (header.number > this.generation.number && (this.onLaterGeneration === undefined || this.unreachable?.tag === tag)) return
    // Until the two hosts are on one generation, the next sync round sends the peer a message framed with this host's
    // generation, which it answers. Without this, a message dropped by the rate limits below, or a gossip of another
    // generation (dropped), left both sides silent for good: Automerge's sync sent its message and waits for an answer.
    p.state = A.initSyncState()
    if (header.number < this.generation.number) {
      // Behind: send the document (compacted, so small), not more often than every 2 s per peer.
      if (now - p.lastGenerationMessage < 2000) return
      p.lastGenerationMessage = now
      this.write(peer, p, this.frame(KIND_DOCUMENT, A.save(this.state.automergeDoc)))
      return
    }
    if (header.kind !== KIND_DOCUMENT) {
      if (now - p.lastGenerationMessage < 2000) return
      p.lastGenerationMessage = now
      this.write(peer, p, this.frame(KIND_BEHIND, new Uint8Array(0)))
      return
    }
    if (this.onLaterGeneration === undefined || this.entering !== undefined) return
    let doc: A.Doc<unknown>
    try {
      doc = plainStrings(A.load(payload))
    } catch (err) {
      this.log.warn({ err, peer }, 'ignored an undecodable document of a later generation')
      return
    }
    const loaded = generationOf(doc)
    if (loaded.number !== header.number || loaded.id !== header.id) return
    this.log.info({ peer, from: this.generation.number, to: header.number }, 'a peer is on a later document generation; moving to it')
    const entering = this.onLaterGeneration(doc, peer).catch((err: unknown) => {
      // A gap is for the operator (the error says what is lost and how to recover); retrying cannot close it.
      if (err instanceof GenerationGapError) this.unreachable = { tag, error: err }
      this.log.error({ err, peer }, 'could not move to the later document generation')
    }).finally(() => { this.entering = undefined })
    this.entering = entering
  }

  private frame (kind: number, payload: Uint8Array): Uint8Array {
    const out = new Uint8Array(HEADER + payload.length)
    const view = new DataView(out.buffer)
    view.setUint8(0, kind)
    view.setUint32(1, this.generation.number)
    out.set(Buffer.from(this.generation.id, 'hex'), 5)
    out.set(payload, HEADER)
    return out
  }

  private parse (message: Uint8Array): (GenerationTag & { kind: number }) | undefined {
    if (message.length < HEADER) return undefined
    const view = new DataView(message.buffer, message.byteOffset, message.byteLength)
    return { kind: view.getUint8(0), number: view.getUint32(1), id: Buffer.from(message.subarray(5, HEADER)).toString('hex') }
  }
}
