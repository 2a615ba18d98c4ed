import { type ClusterDoc, hostIdHash } from '@pgmesh/model'
import type { Logger } from 'pino'

/**
 * Which peer speaks for which host: the one home of member authorization. Every message about "host X" (a
 * heartbeat, its observed state, a lease for X's instance, X's task-log lines) is taken only from the peer id the
 * cluster document binds to X (`hosts[X].peer_id`), never from a removed peer. The mesh and the lease voter get its
 * checks as functions (they know no hosts).
 */
export class MemberDirectory {
  private builtFrom: Partial<ClusterDoc> | undefined
  private hostByPeer = new Map<string, string>()
  private removed = new Set<string>()

  constructor (private readonly doc: () => Partial<ClusterDoc>) {}

  /** The host id bound to this peer; undefined for a stranger or a removed host. */
  hostOf (peerId: string): string | undefined {
    this.refresh()
    return this.removed.has(peerId) ? undefined : this.hostByPeer.get(peerId)
  }

  /** The peer may speak for this host. */
  authorizeSender (peerId: string, hostId: string): boolean {
    return peerId !== '' && this.hostOf(peerId) === hostId
  }

  /** The peer may act for this instance: one of its own host's (`<database>-<node>-<hash of host id>`). */
  speaksForInstance (peerId: string, instanceId: string): boolean {
    const hostId = this.hostOf(peerId)
    return hostId !== undefined && instanceId.endsWith(`-${hostIdHash(hostId)}`)
  }

  /** A host id the document knows. */
  knows (hostId: string): boolean {
    return Object.hasOwn(this.doc().hosts ?? {}, hostId)
  }

  /** A removed host's peer: refused everything, even the document. */
  isRemoved (peerId: string): boolean {
    this.refresh()
    return this.removed.has(peerId)
  }

  private refresh (): void {
    // Automerge gives a new document object on every change: rebuild only then.
    const doc = this.doc()
    if (doc === this.builtFrom) return
    this.builtFrom = doc
    const hostByPeer = new Map<string, string>()
    for (const [id, host] of Object.entries(doc.hosts ?? {})) if (host.peer_id !== '') hostByPeer.set(host.peer_id, id)
    this.hostByPeer = hostByPeer
    this.removed = new Set(Object.keys(doc.removed_peers ?? {}))
  }
}

/**
 * Refused messages: counted, and logged at warn at most once a minute per kind and peer (a rogue peer sending a
 * heartbeat a second must not flood the log).
 */
export class RefusedMessages {
  private readonly lastLogged = new Map<string, number>()

  constructor (private readonly log: Logger, private readonly count: (kind: string) => void, private readonly everyMs = 60_000) {}

  /** `expected`: a refusal that normal operation makes (a joiner's first heartbeats): counted, logged at debug. */
  report (kind: string, peerId: string, detail: Record<string, unknown>, expected = false): void {
    this.count(kind)
    if (expected) {
      this.log.debug({ kind, peer: peerId, ...detail }, 'ignored a message from a peer not (yet) bound to a host')
      return
    }
    const key = `${kind} ${peerId}`
    const now = Date.now()
    const last = this.lastLogged.get(key)
    if (last !== undefined && now - last < this.everyMs) return
    if (this.lastLogged.size > 10_000) this.lastLogged.clear()
    this.lastLogged.set(key, now)
    this.log.warn({ kind, peer: peerId, ...detail }, 'refused a message from a peer not authorized for it (logged once a minute per peer)')
  }
}
