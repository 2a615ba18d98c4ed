import './polyfill.js'
import { noise } from '@chainsafe/libp2p-noise'
import { TopicValidatorResult, gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { KEEP_ALIVE } from '@libp2p/interface'
import type { Libp2p, PeerId, PrivateKey, Stream } from '@libp2p/interface'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import { type Framed, frame } from './framed.js'
import { GossipStats, type GossipWireStats } from './gossip-stats.js'
import type { ClusterKey } from './keys.js'
import type { Startable } from '@pgmesh/model'

export interface MeshOptions {
  privateKey: PrivateKey
  clusterKey: ClusterKey
  /** Multiaddrs to listen on, e.g. `/ip4/127.0.0.1/tcp/4001`. */
  listen: string[]
  /** Addresses to tell other hosts about instead of the listen addresses (NAT, 0.0.0.0 listeners). */
  announce?: string[]
  logger: Logger
}

export interface PeerTarget { peerId: string, addresses: readonly string[] }

/** One gossip topic's messages as this host's code sees them: published here, and delivered here (first copies). */
export interface TopicStats { published: number, bytesPublished: number, delivered: number, bytesDelivered: number }

/** Running totals since start, for the host's metrics: per topic, and gossipsub's own traffic on the wire. */
export interface MeshStats { topics: Record<string, TopicStats>, wire: GossipWireStats }

type StreamHandler = (channel: Framed, remotePeer: string) => void | Promise<void>
/**
 * `fromPeer`: the message's signed author. The return value matters only on a topic subscribed with
 * `relay: 'when-asked'`: true asks for the message to be relayed.
 */
type MessageHandler = (data: Uint8Array, fromPeer: string) => void | boolean

export interface SubscribeOptions {
  /**
   * Whether this host relays a topic's messages to its gossip mesh peers. 'always' (the default): every message,
   * a second path past a broken connection. 'when-asked': only a message a handler returns true for. Every host
   * publishes straight to every peer, so in a whole mesh each relayed copy reaches hosts that already have it.
   */
  relay?: 'always' | 'when-asked'
}

const KEEP_ALIVE_TAG = `${KEEP_ALIVE}-pgmesh`

/**
 * gossipsub's peer scoring, minus the IP colocation penalty (P6). P6 defends open networks against one operator
 * running many identities from one address; its default (weight -5 past 10 peers per IP, quadratic) scores every
 * peer on a shared address at -5·(n-10)², below the graylist (-80) from 15 hosts on: their messages, heartbeats
 * included, are dropped. Many hosts behind one address is normal here (one-machine testbeds, NAT, several hosts on
 * one container node), and no peer reaches gossipsub without passing the pnet handshake with the cluster key, so
 * an address says nothing a connection has not already proven. The other penalties (broken promises, graft
 * flooding, invalid messages) stay.
 */
const MESH_SCORE_PARAMS = { IPColocationFactorWeight: 0 } as const

/**
 * A smaller gossip mesh than gossipsub's defaults (D 6, Dlo 4, Dhi 12, Dlazy 6). Every host is connected to every
 * other and publishes with flood publish (gossipsub's default: straight to every subscribed peer), so the mesh only
 * relays, as a second path past a broken connection; yet each relay is one more copy of every message that every
 * host receives, decrypts, decodes and drops as a duplicate: at 10 hosts a heartbeat arrived 6.1 times. With D 3 a
 * message still has three relay paths besides the direct one. Dout (outbound mesh peers kept) must stay below Dlo
 * and at most D/2.
 */
const MESH_DEGREE = { D: 3, Dlo: 2, Dhi: 5, Dscore: 2, Dout: 1, Dlazy: 3 } as const

/**
 * Inbound connection admission sized for a cluster, not for a public node. libp2p's defaults (5 connections per
 * second per remote address, 10 handshakes pending) refuse most of a cluster that dials at once from one address
 * (a testbed, NAT): every host redials a restarted host within the same second, and each joiner dials every member.
 * 64 covers every host of the largest cluster pgmesh is measured at reconnecting in one second; the cost of a
 * refused-too-late connection stays small because pnet fails a peer without the cluster key on its first bytes,
 * before noise or any stream is set up.
 */
const MESH_CONNECTION_LIMITS = { inboundConnectionThreshold: 64, maxIncomingPendingConnections: 64 } as const

/**
 * This host's libp2p node: TCP + pnet + noise + yamux, identify, ping and gossipsub. Small surface on purpose: the
 * rest of pgmesh sees framed protocol streams, pub/sub topics and "keep these peers connected".
 */
export class Mesh implements Startable {
  readonly peerId: string
  private node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }> | undefined
  private readonly handlers = new Map<string, StreamHandler>()
  private readonly topologies: Array<{ protocol: string, onConnect: (peer: string) => void, onDisconnect: (peer: string) => void }> = []
  private readonly topicHandlers = new Map<string, MessageHandler[]>()
  private readonly relayWhenAsked = new Set<string>()
  private readonly denied = new Set<string>()
  private readonly dialing = new Set<string>()
  private readonly log: Logger
  private readonly gossipStats = new GossipStats()
  private readonly topicStats = new Map<string, TopicStats>()

  constructor (private readonly options: MeshOptions) {
    this.log = options.logger
    this.peerId = peerIdFromPrivateKey(options.privateKey).toString()
  }

  /** Registers a protocol handler; call before start(). */
  handle (protocol: string, handler: StreamHandler): void {
    this.handlers.set(protocol, handler)
  }

  /** Notifies when a peer that speaks `protocol` connects or disconnects; call before start(). */
  onPeer (protocol: string, events: { connect: (peer: string) => void, disconnect: (peer: string) => void }): void {
    this.topologies.push({ protocol, onConnect: events.connect, onDisconnect: events.disconnect })
  }

  /** Handles messages on a gossip topic; may be called before or after start(). */
  subscribe (topic: string, handler: MessageHandler, options: SubscribeOptions = {}): void {
    if (options.relay === 'when-asked' && !this.relayWhenAsked.has(topic)) {
      this.relayWhenAsked.add(topic)
      if (this.node !== undefined) this.relayWhenAskedOn(this.node, topic)
    }
    const list = this.topicHandlers.get(topic) ?? []
    list.push(handler)
    this.topicHandlers.set(topic, list)
    this.gossipStats.topicLabels.set(topic, topic)
    if (this.node !== undefined) this.node.services.pubsub.subscribe(topic)
  }

  async start (): Promise<void> {
    const { options } = this
    const denied = this.denied
    const node = await createLibp2p({
      start: false,
      privateKey: options.privateKey,
      addresses: { listen: options.listen, announce: options.announce ?? [] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionProtector: preSharedKey({ psk: options.clusterKey.toPsk() }),
      connectionManager: MESH_CONNECTION_LIMITS,
      connectionGater: {
        // Loopback and private addresses are how hosts on one machine or one LAN find each other.
        denyDialMultiaddr: () => false,
        denyDialPeer: (peer: PeerId) => denied.has(peer.toString()),
        denyInboundEncryptedConnection: (peer: PeerId) => denied.has(peer.toString())
      },
      services: {
        identify: identify(),
        ping: ping(),
        // StrictSign (gossipsub's default, stated so it stays): every message carries its author's signature and
        // unsigned ones are dropped, so handlers can authorize by `from`.
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          fallbackToFloodsub: false,
          globalSignaturePolicy: 'StrictSign',
          // A copy already seen is known by author and sequence number before its signature is checked again (the
          // message id StrictSign uses; an unsigned message fails the check and never enters the cache).
          fastMsgIdFn: (msg) => msg.from === undefined || msg.seqno === undefined ? '' : `${Buffer.from(msg.from).toString('base64')}/${Buffer.from(msg.seqno).toString('hex')}`,
          scoreParams: MESH_SCORE_PARAMS,
          ...MESH_DEGREE,
          // Only a few wire totals, kept as numbers (gossip-stats.ts): what each host's share of the mesh costs.
          metricsRegister: this.gossipStats.register(),
          metricsTopicStrToLabel: this.gossipStats.topicLabels
        })
      }
    })
    this.node = node
    for (const [protocol, handler] of this.handlers) {
      await node.handle(protocol, (stream: Stream, connection) => {
        void Promise.resolve(handler(frame(stream), connection.remotePeer.toString())).catch((err: unknown) => {
          this.log.debug({ err, protocol }, 'stream handler ended with an error')
        })
      }, { maxInboundStreams: 64, maxOutboundStreams: 64 })
    }
    for (const t of this.topologies) {
      await node.register(t.protocol, {
        onConnect: (peer) => { t.onConnect(peer.toString()) },
        onDisconnect: (peer) => { t.onDisconnect(peer.toString()) }
      })
    }
    node.addEventListener('peer:connect', (evt) => {
      const peer = evt.detail
      this.log.debug({ peer: peer.toString() }, 'peer connected')
      void node.peerStore.merge(peer, { tags: { [KEEP_ALIVE_TAG]: { value: 100 } } }).catch(() => {})
    })
    node.addEventListener('peer:disconnect', (evt) => {
      this.log.debug({ peer: evt.detail.toString() }, 'peer disconnected')
    })
    node.services.pubsub.addEventListener('message', (evt) => {
      const msg = evt.detail
      // A topic relayed only when asked is delivered by its validator, before gossipsub decides to relay.
      if (this.relayWhenAsked.has(msg.topic)) return
      this.deliver(msg.topic, msg.data, msg.type === 'signed' ? msg.from.toString() : '')
    })
    for (const topic of this.relayWhenAsked) this.relayWhenAskedOn(node, topic)
    await node.start()
    for (const topic of this.topicHandlers.keys()) node.services.pubsub.subscribe(topic)
    this.log.info({ peerId: this.peerId, addresses: this.addresses() }, 'mesh started')
  }

  /**
   * gossipsub runs a topic's validator once per message, on its first copy, and relays the message only when the
   * validator accepts it (an ignored message costs its sender no score): the validator delivers it and says.
   */
  private relayWhenAskedOn (node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }>, topic: string): void {
    node.services.pubsub.topicValidators.set(topic, (_via, msg) => {
      const asked = this.deliver(topic, msg.data, msg.type === 'signed' ? msg.from.toString() : '')
      return asked ? TopicValidatorResult.Accept : TopicValidatorResult.Ignore
    })
  }

  /** Hands a first copy to the topic's handlers; true when one of them asks for it to be relayed. */
  private deliver (topic: string, data: Uint8Array, from: string): boolean {
    const handlers = this.topicHandlers.get(topic)
    if (handlers === undefined) return false
    const stats = this.statsOf(topic)
    stats.delivered++
    stats.bytesDelivered += data.length
    let asked = false
    for (const h of handlers) {
      try { asked = h(data, from) === true || asked } catch (err) { this.log.warn({ err, topic }, 'gossip handler failed') }
    }
    return asked
  }

  async stop (): Promise<void> {
    const node = this.node
    this.node = undefined
    if (node !== undefined) await node.stop()
  }

  private get started (): Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }> {
    if (this.node === undefined) throw new Error('mesh is not started')
    return this.node
  }

  /** Full multiaddrs (ending in /p2p/<peer id>) other hosts can dial. */
  addresses (): string[] {
    if (this.node === undefined) return []
    return this.node.getMultiaddrs().map(ma => ma.toString())
  }

  connectedPeers (): string[] {
    if (this.node === undefined) return []
    return this.node.getPeers().map(p => p.toString())
  }

  isConnected (peer: string): boolean {
    return this.connectedPeers().includes(peer)
  }

  async open (peer: string, protocol: string, signal?: AbortSignal): Promise<Framed> {
    const stream = await this.started.dialProtocol(peerIdFromString(peer), protocol, { signal })
    return frame(stream)
  }

  /** Publishes to a topic; resolves with the peers gossipsub sent it to directly. */
  async publish (topic: string, data: Uint8Array): Promise<string[]> {
    const node = this.node
    if (node === undefined) return []
    const stats = this.statsOf(topic)
    stats.published++
    stats.bytesPublished += data.length
    const result = await node.services.pubsub.publish(topic, data)
    return result.recipients.map(p => p.toString())
  }

  /** Gossip totals since start (per topic, and on the wire). */
  stats (): MeshStats {
    return { topics: Object.fromEntries(this.topicStats), wire: this.gossipStats.wire }
  }

  private statsOf (topic: string): TopicStats {
    let stats = this.topicStats.get(topic)
    if (stats === undefined) {
      stats = { published: 0, bytesPublished: 0, delivered: 0, bytesDelivered: 0 }
      this.topicStats.set(topic, stats)
    }
    return stats
  }

  /** Dials a multiaddr that ends in /p2p/<id>; returns the remote peer id. */
  async dial (address: string, signal?: AbortSignal): Promise<string> {
    const connection = await this.started.dial(multiaddr(address), { signal })
    const peer = connection.remotePeer
    await this.started.peerStore.merge(peer, { tags: { [KEEP_ALIVE_TAG]: { value: 100 } } })
    return peer.toString()
  }

  /**
   * Keeps a connection to every listed peer: dials those that are not connected (in the background, one dial per
   * peer at a time) and tags them so libp2p's reconnect queue re-dials them when a connection drops.
   */
  keepConnected (targets: readonly PeerTarget[]): void {
    const node = this.node
    if (node === undefined) return
    const connected = new Set(this.connectedPeers())
    for (const target of targets) {
      if (target.peerId === this.peerId || connected.has(target.peerId) || this.dialing.has(target.peerId) || this.denied.has(target.peerId)) continue
      if (target.addresses.length === 0) continue
      this.dialing.add(target.peerId)
      const peer = peerIdFromString(target.peerId)
      void (async () => {
        try {
          await node.peerStore.merge(peer, {
            multiaddrs: target.addresses.map(a => multiaddr(stripPeer(a))),
            tags: { [KEEP_ALIVE_TAG]: { value: 100 } }
          })
          await node.dial(peer, { signal: AbortSignal.timeout(5000) })
        } catch (err) {
          this.log.debug({ peer: target.peerId, err: (err as Error).message }, 'dial failed; will retry')
        } finally {
          this.dialing.delete(target.peerId)
        }
      })()
    }
  }

  /** Refuses every connection from or to this peer from now on (a removed host). */
  deny (peer: string): void {
    if (peer === this.peerId) return
    this.denied.add(peer)
    if (this.node !== undefined) void this.node.hangUp(peerIdFromString(peer)).catch(() => {})
  }
}

function stripPeer (address: string): string {
  return address.replace(/\/p2p\/[^/]+$/, '')
}
