import type { PeerReport } from '@pgmesh/cluster'
import type { Heartbeats, Reachability } from '@pgmesh/mesh'
import { type ComponentStatus, type HostObserved, type HostRecord, NotFoundError, type ObservedInstance } from '@pgmesh/model'
import type { ClusterState, GenerationGapError } from '@pgmesh/state'
import { type HeardState, HostStateClock } from './host-state-clock.js'
import { VERSION } from './version.js'

export interface HostView {
  record: HostRecord
  reachability: Reachability
  /** When this host last heard from it (its own clock). */
  lastSeen: Date | undefined
  observed: HostObserved | undefined
  /** `healthy`, `degraded` (a reported component is unhealthy), `unreachable` or `unknown`, as the API answers it. */
  state: HeardState | Reachability
  /** When it entered that state, by this host's clock and as far as this host has heard (see HostStateClock). */
  since: Date | undefined
}

export interface HostHealthDeps {
  hostId: string
  state: ClusterState
  /** The heartbeats, once the mesh runs. */
  heartbeats: () => Heartbeats<HostObserved> | undefined
  connectedPeers: () => number
  /** This host's instances as its reconciler sees them (none on a control-only host). */
  ownInstances: () => ObservedInstance[]
  /** Why this host's document cannot move to the cluster's later generation, while it cannot (the replicator's). */
  generationGap: () => GenerationGapError | undefined
  /** Components of this host's runtime beyond the mesh and the document (the swarm orchestrator's `docker`). */
  components: Readonly<Record<string, () => ComponentStatus>>
  /** The Postgres versions this host can run, when its runtime says. */
  postgresVersions?: () => HostObserved['postgres_versions']
}

/**
 * What this host knows of every host's health: its own report (sent with every heartbeat) and the reports the others
 * sent last, with whether their heartbeats are current.
 */
export class HostHealth {
  private readonly stateClock: HostStateClock

  constructor (private readonly deps: HostHealthDeps) {
    this.stateClock = new HostStateClock(() => deps.heartbeats()?.unreachableAfterMs ?? 4000)
  }

  /** Every heartbeat as it is recorded (this host's own too), so state changes keep the time they happened. */
  heardHeartbeat (hostId: string, observed: HostObserved | undefined, at: number): void {
    this.stateClock.heard(hostId, heardState(observed), at)
  }

  hostViews (): HostView[] {
    const now = Date.now()
    return Object.values(this.deps.state.doc.hosts ?? {})
      .map(record => this.view(record, now))
      .sort((a, b) => a.record.id.localeCompare(b.record.id))
  }

  hostView (hostId: string): HostView {
    const record = this.deps.state.doc.hosts?.[hostId]
    if (record === undefined) throw new NotFoundError('no host found with the given ID')
    return this.view(record, Date.now())
  }

  /** Every reachable host's instances, as last reported (this host's own, fresh). */
  clusterInstances (): ObservedInstance[] {
    return [...this.deps.ownInstances(), ...this.peerReports().flatMap(p => p.instances)]
  }

  /** What the reachable peers last reported. */
  peerReports (): PeerReport[] {
    const now = Date.now()
    const heartbeats = this.deps.heartbeats()
    const out: PeerReport[] = []
    for (const id of Object.keys(this.deps.state.doc.hosts ?? {})) {
      if (id === this.deps.hostId || heartbeats?.reachability(id, now) !== 'healthy') continue
      const report = heartbeats.get(id)?.heartbeat.observed
      // A host reports only its own instances (its heartbeat's sender is authorized for it, not for others).
      if (report !== undefined) out.push({ hostId: id, report, instances: (report.instances ?? []).filter(i => i.host_id === id) })
    }
    return out
  }

  /** Hosts whose heartbeats are current (always this one). */
  reachableHosts (): Set<string> {
    const now = Date.now()
    const heartbeats = this.deps.heartbeats()
    return new Set(Object.keys(this.deps.state.doc.hosts ?? {}).filter(id => id === this.deps.hostId || heartbeats?.reachability(id, now) === 'healthy'))
  }

  /** When this host last heard a heartbeat of `hostId` (its own clock); now for itself. */
  lastHeardFrom (hostId: string): number | undefined {
    if (hostId === this.deps.hostId) return Date.now()
    return this.deps.heartbeats()?.get(hostId)?.receivedAt
  }

  /** This host's own report. */
  observed (): HostObserved {
    const peers = this.deps.connectedPeers()
    const others = Object.keys(this.deps.state.doc.hosts ?? {}).filter(id => id !== this.deps.hostId).length
    return {
      version: VERSION,
      components: {
        mesh: {
          healthy: others === 0 || peers > 0,
          ...(others > 0 && peers === 0 ? { error: 'not connected to any other host' } : {}),
          details: { connected_peers: peers, other_hosts: others }
        },
        state: stateComponent(this.deps.state.heads().length, this.deps.generationGap()),
        ...Object.fromEntries(Object.entries(this.deps.components).map(([name, observe]) => [name, observe()]))
      },
      instances: this.deps.ownInstances(),
      ...versions(this.deps.postgresVersions?.())
    }
  }

  private view (record: HostRecord, now: number): HostView {
    const self = record.id === this.deps.hostId
    const last = this.deps.heartbeats()?.get(record.id)
    const reachability = this.deps.heartbeats()?.reachability(record.id, now) ?? (self ? 'healthy' : 'unknown')
    const observed = self ? this.observed() : last?.heartbeat.observed
    const state = reachability === 'healthy' ? heardState(observed) : reachability
    // A state the heartbeats have not shown yet (this host's own report changed since its last beat) began about now.
    const since = this.stateClock.since(record.id, state, last?.receivedAt) ?? (self ? now : undefined)
    return {
      record,
      reachability,
      lastSeen: self ? new Date(now) : (last === undefined ? undefined : new Date(last.receivedAt)),
      observed,
      state,
      since: since === undefined ? undefined : new Date(since)
    }
  }
}

/**
 * The cluster document's component. A generation gap makes it unhealthy (the host degraded) with the error's message,
 * which names what is lost and how to recover: the host still serves, but from a document the cluster has left.
 */
function stateComponent (heads: number, gap: GenerationGapError | undefined): ComponentStatus {
  if (gap === undefined) return { healthy: true, details: { heads } }
  return {
    healthy: false,
    error: gap.message,
    details: { heads, generation: gap.localGeneration, cluster_generation: gap.clusterGeneration, lost_changes: gap.unmerged.length }
  }
}

function heardState (observed: HostObserved | undefined): HeardState {
  return Object.values(observed?.components ?? {}).some(c => !c.healthy) ? 'degraded' : 'healthy'
}

function versions (reported: HostObserved['postgres_versions']): Pick<HostObserved, 'postgres_versions'> {
  return reported === undefined ? {} : { postgres_versions: reported }
}
