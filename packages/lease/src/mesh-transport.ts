import type { Mesh } from '@pgmesh/mesh'
import type { LeaseReply, LeaseRequest, LeaseTransport, LeaseVoter } from './lease.js'

export const LEASE_PROTOCOL = '/pgmesh/lease/1.0.0'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Who may ask this voter for what: the host passes its member directory in (the lease package knows no hosts). */
export interface LeaseGuard {
  /** Whether the peer (the stream's authenticated remote) may act for this holder, an instance of its own host. */
  speaksFor: (peerId: string, holder: string) => boolean
  /** Told of each refused request (logged and counted by the host). */
  onRefused?: (peerId: string, request: LeaseRequest) => void
}

/**
 * Answers other hosts' lease requests with this host's voter; register before the mesh starts. A refused request gets
 * a plain refusal (granted false), never a grant.
 */
export function serveLeases (mesh: Mesh, voter: LeaseVoter, guard?: LeaseGuard): void {
  mesh.handle(LEASE_PROTOCOL, async (channel, remotePeer) => {
    const request = JSON.parse(decoder.decode(await channel.read())) as LeaseRequest
    let reply: LeaseReply | undefined
    if (guard === undefined) {
      reply = voter.answer(request)
    } else {
      reply = voter.answerFrom(request, holder => guard.speaksFor(remotePeer, holder))
      if (reply === undefined) guard.onRefused?.(remotePeer, request)
    }
    await channel.write(encoder.encode(JSON.stringify(reply ?? { granted: false, term: 0 })))
    await channel.close()
  })
}

/** Asks the voters over libp2p streams; `voters` lists their peer ids (this host's own excluded). */
export function meshTransport (mesh: Mesh, voters: () => string[]): LeaseTransport {
  return {
    voters,
    ask: async (voter, request, timeoutMs) => {
      const signal = AbortSignal.timeout(timeoutMs)
      // A dial to a dead host may not honour the signal at once: the answer races a timer of its own.
      let timer: NodeJS.Timeout | undefined
      const expired = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('lease request timed out')) }, timeoutMs) })
      try {
        return await Promise.race([exchange(mesh, voter, request, signal), expired])
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

async function exchange (mesh: Mesh, voter: string, request: LeaseRequest, signal: AbortSignal): Promise<LeaseReply> {
  const channel = await mesh.open(voter, LEASE_PROTOCOL, signal)
  try {
    await channel.write(encoder.encode(JSON.stringify(request)))
    return JSON.parse(decoder.decode(await channel.read())) as LeaseReply
  } catch (err) {
    channel.abort(err as Error)
    throw err
  } finally {
    await channel.close().catch(() => {})
  }
}
