import type { HeartbeatStats, MeshStats } from '@pgmesh/mesh'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Prometheus figures of one host: mesh, document replication, its instances' replication and the process itself. */
export class HostMetrics {
  readonly registry = new Registry()
  readonly changeVisibleSeconds: Histogram
  readonly documentChanges: Counter<'origin'>
  /** Set by the reconciler on each poll of its primaries' subscriptions. */
  readonly subscriptionsDown: Gauge
  readonly subscriptionApplyErrors: Counter
  /** Mesh messages refused because their sender is not the member they speak for (see MemberDirectory). */
  readonly refusedMessages: Counter<'kind'>
  /** Reconcile passes run, by what asked for the one that started each (several asks made meanwhile make one pass). */
  readonly reconcilePasses: Counter<'trigger'>

  constructor (source: {
    peers: () => number
    knownHosts: () => number
    documentBytes: () => number
    replication: () => { syncMessagesSent: number, syncMessagesReceived: number, syncBytesSent: number, syncBytesReceived: number, gossipSent: number, gossipReceived: number, resyncRounds: number } | undefined
    heartbeats?: () => HeartbeatStats | undefined
    /** Gossip per topic and gossipsub's wire totals, once the mesh runs. */
    mesh?: () => MeshStats | undefined
    /** Whether this host's document cannot move to the cluster's later generation (GenerationGapError). */
    generationGap?: () => boolean
    /** Bytes of Automerge's WebAssembly memory (it only grows: a whole-document load leaves its peak). */
    automergeMemoryBytes?: () => number
  }) {
    const r = this.registry
    collectDefaultMetrics({ register: r, prefix: 'pgmesh_' })
    new Gauge({ name: 'pgmesh_mesh_peers', help: 'Connected libp2p peers', registers: [r], collect () { this.set(source.peers()) } })
    new Gauge({ name: 'pgmesh_cluster_hosts', help: 'Hosts in the cluster document', registers: [r], collect () { this.set(source.knownHosts()) } })
    new Gauge({
      name: 'pgmesh_document_generation_gap',
      help: "1 while this host's cluster document cannot move to the cluster's later generation (its changes since are lost; GET /v1/hosts says what and how to recover), else 0",
      registers: [r],
      collect () { this.set(source.generationGap?.() === true ? 1 : 0) }
    })
    const automergeMemoryBytes = source.automergeMemoryBytes
    if (automergeMemoryBytes !== undefined) {
      new Gauge({
        name: 'pgmesh_automerge_memory_bytes',
        help: "Size of Automerge's WebAssembly memory, bytes: part of the resident memory; it never shrinks, so it holds the peak of the largest document load or sync",
        registers: [r],
        collect () { this.set(automergeMemoryBytes()) }
      })
    }
    new Gauge({ name: 'pgmesh_document_bytes', help: 'Size of the cluster document on disk (snapshot plus change log), bytes', registers: [r], collect () { this.set(source.documentBytes()) } })
    const counter = (name: string, help: string, pick: (s: NonNullable<ReturnType<typeof source.replication>>) => number): void => {
      // Mirrors a monotonically increasing total kept by the replicator.
      new Counter({ name, help, registers: [r], collect () { const s = source.replication(); this.reset(); this.inc(s === undefined ? 0 : pick(s)) } })
    }
    counter('pgmesh_sync_messages_sent_total', 'Automerge sync messages sent', s => s.syncMessagesSent)
    counter('pgmesh_sync_messages_received_total', 'Automerge sync messages received', s => s.syncMessagesReceived)
    counter('pgmesh_sync_bytes_sent_total', 'Automerge sync bytes sent', s => s.syncBytesSent)
    counter('pgmesh_sync_bytes_received_total', 'Automerge sync bytes received', s => s.syncBytesReceived)
    counter('pgmesh_sync_rounds_total', 'Periodic anti-entropy sync rounds', s => s.resyncRounds)
    counter('pgmesh_gossip_changes_sent_total', 'Document changes published by gossip', s => s.gossipSent)
    counter('pgmesh_gossip_changes_received_total', 'Document changes received by gossip', s => s.gossipReceived)
    const heartbeatCounter = (name: string, help: string, pick: (s: HeartbeatStats) => number): void => {
      new Counter({ name, help, registers: [r], collect () { const s = source.heartbeats?.(); this.reset(); this.inc(s === undefined ? 0 : pick(s)) } })
    }
    heartbeatCounter('pgmesh_heartbeats_sent_total', 'Heartbeats published by this host', s => s.sent)
    heartbeatCounter('pgmesh_heartbeat_bytes_sent_total', 'Heartbeat payload bytes published by this host', s => s.bytesSent)
    heartbeatCounter('pgmesh_heartbeats_received_total', 'Heartbeats of other hosts delivered to this host', s => s.received)
    heartbeatCounter('pgmesh_heartbeat_bytes_received_total', 'Heartbeat payload bytes delivered to this host', s => s.bytesReceived)
    heartbeatCounter('pgmesh_heartbeats_relayed_total', 'Heartbeats of other hosts this host relayed because another host asked for them (it cannot hear their author)', s => s.relayed)
    new Gauge({
      name: 'pgmesh_heartbeat_unheard_hosts',
      help: 'Member hosts this host has no connection to or has heard nothing from for two heartbeat intervals (it asks the others to relay their heartbeats); above 0 for long, a connection between two hosts is broken',
      registers: [r],
      collect () { this.set(source.heartbeats?.()?.unheard ?? 0) }
    })
    const topicCounter = (name: string, help: string, pick: (t: MeshStats['topics'][string]) => number): void => {
      new Counter({
        name, help, labelNames: ['topic'], registers: [r],
        collect () { this.reset(); for (const [topic, t] of Object.entries(source.mesh?.()?.topics ?? {})) this.inc({ topic }, pick(t)) }
      })
    }
    topicCounter('pgmesh_gossip_messages_published_total', 'Gossip messages this host published, by topic', t => t.published)
    topicCounter('pgmesh_gossip_bytes_published_total', 'Gossip payload bytes this host published, by topic', t => t.bytesPublished)
    topicCounter('pgmesh_gossip_messages_delivered_total', 'Gossip messages delivered to this host (first copies), by topic', t => t.delivered)
    topicCounter('pgmesh_gossip_bytes_delivered_total', 'Gossip payload bytes delivered to this host (first copies), by topic', t => t.bytesDelivered)
    const wireCounter = (name: string, help: string, pick: (w: MeshStats['wire']) => number): void => {
      new Counter({ name, help, registers: [r], collect () { const m = source.mesh?.(); this.reset(); this.inc(m === undefined ? 0 : pick(m.wire)) } })
    }
    wireCounter('pgmesh_gossipsub_rpcs_sent_total', 'gossipsub RPCs sent (messages and control)', w => w.rpcsSent)
    wireCounter('pgmesh_gossipsub_rpc_bytes_sent_total', 'gossipsub RPC bytes sent (before stream framing and encryption)', w => w.rpcBytesSent)
    wireCounter('pgmesh_gossipsub_messages_sent_total', 'Messages in the gossipsub RPCs sent (a publish to n peers counts n)', w => w.messagesSent)
    wireCounter('pgmesh_gossipsub_rpcs_received_total', 'gossipsub RPCs received (messages and control)', w => w.rpcsReceived)
    wireCounter('pgmesh_gossipsub_rpc_bytes_received_total', 'gossipsub RPC bytes received (before stream framing and encryption)', w => w.rpcBytesReceived)
    wireCounter('pgmesh_gossipsub_messages_received_total', 'Messages in the gossipsub RPCs received, duplicates included', w => w.messagesReceived)
    wireCounter('pgmesh_gossipsub_ihave_received_total', 'IHAVE entries received (gossip about messages)', w => w.ihaveReceived)
    new Counter({
      name: 'pgmesh_gossipsub_duplicates_received_total', help: 'Gossip messages received again after their first copy, by topic', labelNames: ['topic'], registers: [r],
      collect () { this.reset(); for (const [topic, n] of Object.entries(source.mesh?.()?.wire.duplicatesReceived ?? {})) this.inc({ topic }, n) }
    })
    this.documentChanges = new Counter({ name: 'pgmesh_document_changes_total', help: 'Document changes applied', labelNames: ['origin'], registers: [r] })
    this.changeVisibleSeconds = new Histogram({
      name: 'pgmesh_change_visible_seconds',
      help: 'Time from a change being made on its host to it being applied here (wall clocks)',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r]
    })
    this.subscriptionsDown = new Gauge({
      name: 'pgmesh_subscriptions_down',
      help: "Subscriptions of this host's primaries that are down (held down until replicating again after an error)",
      registers: [r]
    })
    this.subscriptionApplyErrors = new Counter({
      name: 'pgmesh_subscription_apply_errors_total',
      help: "Errors of apply workers seen in the server logs of this host's primaries",
      registers: [r]
    })
    this.reconcilePasses = new Counter({
      name: 'pgmesh_reconcile_passes_total',
      help: 'Reconcile passes run, by trigger (document, peer, instance, timer, requeue, start)',
      labelNames: ['trigger'],
      registers: [r]
    })
    this.refusedMessages = new Counter({
      name: 'pgmesh_refused_peer_messages_total',
      help: 'Mesh messages refused: the sending peer is not the host they speak for, or was removed (by kind)',
      labelNames: ['kind'],
      registers: [r]
    })
  }
}
