import type { ObservedInstance } from '@pgmesh/model'

/** One reachable peer's last report: a new `report` object arrives with each of its heartbeats. */
export interface PeerReport {
  hostId: string
  report: object
  instances: readonly ObservedInstance[]
}

export interface ObservedSources {
  /** This host's instances, built afresh on each call (the reconciler's view). */
  own: () => ObservedInstance[]
  /** The reachable peers' last reports. */
  peers: () => PeerReport[]
  /** How long this host's own instances may be served before they are built again. */
  ownRefreshMs: number
}

export interface ObservedSnapshot {
  /** Moves only when what some host reports, or which hosts are reachable, changed. */
  readonly version: number
  readonly instances: readonly ObservedInstance[]
  readonly byId: ReadonlyMap<string, ObservedInstance>
}

/** A host that knows of no instance (a control-only host before any report, or tests of the document alone). */
export const NOTHING_OBSERVED: ObservedSnapshot = { version: 0, instances: [], byId: new Map() }

/**
 * Every reachable host's instances as reads serve them, with a version. Reads (the API) vastly outnumber changes, and
 * a version lets them serve a response built once per change instead of once per request. A peer's report is
 * compared only when a new heartbeat of it arrived; this host's own instances are rebuilt at most every
 * `ownRefreshMs` (a read may lag a local change by that much, as it lags a peer's by up to one heartbeat).
 */
export class ObservedCluster {
  private current: ObservedSnapshot = NOTHING_OBSERVED
  private ownBuiltAt = Number.NEGATIVE_INFINITY
  private own: { fingerprint: string, instances: readonly ObservedInstance[] } = { fingerprint: '[]', instances: [] }
  private peers = new Map<string, { report: object, fingerprint: string, instances: readonly ObservedInstance[] }>()

  constructor (private readonly sources: ObservedSources) {}

  snapshot (now = Date.now()): ObservedSnapshot {
    let changed = false
    if (now - this.ownBuiltAt >= this.sources.ownRefreshMs) {
      this.ownBuiltAt = now
      const instances = this.sources.own()
      const fingerprint = JSON.stringify(instances)
      if (fingerprint !== this.own.fingerprint) {
        this.own = { fingerprint, instances }
        changed = true
      }
    }
    const peers = new Map<string, { report: object, fingerprint: string, instances: readonly ObservedInstance[] }>()
    for (const { hostId, report, instances } of this.sources.peers()) {
      const seen = this.peers.get(hostId)
      if (seen?.report === report) {
        peers.set(hostId, seen)
        continue
      }
      const fingerprint = JSON.stringify(instances)
      peers.set(hostId, { report, fingerprint, instances: seen?.fingerprint === fingerprint ? seen.instances : instances })
      if (seen?.fingerprint !== fingerprint) changed = true
    }
    // A peer that became unreachable takes its instances out of the reads.
    if (peers.size !== this.peers.size || [...this.peers.keys()].some(id => !peers.has(id))) changed = true
    this.peers = peers
    if (changed) {
      const instances = [...this.own.instances, ...[...peers.values()].flatMap(p => p.instances)]
      this.current = { version: this.current.version + 1, instances, byId: new Map(instances.map(i => [i.id, i])) }
    }
    return this.current
  }
}
