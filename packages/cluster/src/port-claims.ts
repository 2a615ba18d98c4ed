import { type Issue, isLoopbackAddress } from '@pgmesh/model'

/** A fixed Postgres port one instance listens on, and the spec field it comes from (a node's `port`, else the database's). */
export interface PortClaim { databaseId: string, nodeName: string, hostId: string, port: number, path: string }

/**
 * The fixed ports a spec gives its instances. 0 or unset is a port the host picks from its free ones, which cannot
 * collide. Reads any JSON (a merged spec may be invalid): what is not a port or a host id is skipped.
 */
export function portClaims (databaseId: string, spec: Record<string, unknown>): PortClaim[] {
  const claims: PortClaim[] = []
  if (!Array.isArray(spec.nodes)) return claims
  ;(spec.nodes as unknown[]).forEach((node, i) => {
    if (typeof node !== 'object' || node === null) return
    const { name, host_ids: hostIds, port: nodePort } = node as Record<string, unknown>
    const own = typeof nodePort === 'number' && nodePort !== 0
    const port = own ? nodePort : spec.port
    if (typeof name !== 'string' || !Array.isArray(hostIds) || typeof port !== 'number' || port === 0) return
    for (const hostId of hostIds) {
      if (typeof hostId === 'string') claims.push({ databaseId, nodeName: name, hostId, port, path: own ? `nodes[${i}].port` : 'port' })
    }
  })
  return claims
}

export interface PortNeighbours {
  /** A host's client addresses. */
  addresses: (hostId: string) => readonly string[]
  /** Databases being deleted: their instances hold their ports until their hosts remove them. */
  deleting: ReadonlySet<string>
}

/**
 * The claims of a spec that an instance already listening at the same address would refuse to start beside: another
 * database's on the same host, or any instance's on another host with a loopback client address in common (several
 * hosts on one machine, as the local cluster runs them). One spec's own ports on one host are the spec rules' (`duplicate
 * ports allocated on host`). Only what the document says: a port another program holds shows when the instance starts.
 */
export function portIssues (claims: readonly PortClaim[], others: readonly PortClaim[], neighbours: PortNeighbours): Issue[] {
  const issues: Issue[] = []
  const seen = new Set<string>()
  const add = (path: string, message: string): void => {
    if (seen.has(`${path}\n${message}`)) return
    seen.add(`${path}\n${message}`)
    issues.push({ path, message })
  }
  // Hosts that give clients the same loopback address run on one machine, as the local cluster's do. A shared
  // routable one proves nothing: every Docker host has 172.17.0.1, and hosts behind one NAT share theirs.
  const shared = (a: string, b: string): string | undefined => {
    const theirs = new Set(neighbours.addresses(b))
    return neighbours.addresses(a).find(address => theirs.has(address) && isLoopbackAddress(address))
  }
  claims.forEach((claim, i) => {
    const clash = (other: PortClaim): string | undefined => {
      if (other.port !== claim.port) return undefined
      const sameDatabase = other.databaseId === claim.databaseId
      const owner = sameDatabase ? `node ${other.nodeName}` : `node ${other.nodeName} of database ${other.databaseId}${neighbours.deleting.has(other.databaseId) ? ' (being deleted)' : ''}`
      if (other.hostId === claim.hostId) return sameDatabase ? undefined : `port ${claim.port} on host ${claim.hostId} is already used by ${owner}`
      const address = shared(claim.hostId, other.hostId)
      if (address === undefined) return undefined
      return `port ${claim.port} on host ${claim.hostId} is ${sameDatabase ? 'also' : 'already'} used by ${owner} on host ${other.hostId}: both hosts listen on ${address}`
    }
    // Within the spec, each pair once: on the later claim.
    for (const other of [...others, ...claims.slice(0, i)]) {
      const message = clash(other)
      if (message !== undefined) add(claim.path, message)
    }
  })
  return issues
}
