import { InvalidInputError, InvalidJoinTokenError, ServerError } from '@pgmesh/model'
import type { ClusterState } from '@pgmesh/state'
import type { Logger } from 'pino'

export interface JoinOptions {
  cluster_id: string
  cluster_key: string
  /** The cluster's data key (hex), which seals the specs' secrets; absent from members that predate it. */
  data_key?: string
  /** Multiaddrs of every known host, the answering host first. */
  bootstrap: string[]
  /** The answering host's document heads: the joiner has converged once it holds them. */
  heads: string[]
}

/** The join options, and the base URL of the member that gave them: the first of `serverUrls` that answers. */
export async function fetchJoinOptions (serverUrls: string[], token: string, hostId: string, log: Logger): Promise<{ options: JoinOptions, member: string }> {
  let lastError: unknown = new ServerError('no server URL answered')
  for (const url of serverUrls) {
    const base = url.replace(/\/+$/, '')
    try {
      const res = await fetch(`${base}/v1/internal/cluster/join-options`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, host_id: hostId }),
        signal: AbortSignal.timeout(5000)
      })
      if (res.ok) return { options: await res.json() as JoinOptions, member: base }
      const body = await res.json().catch(() => ({})) as { name?: string, message?: string }
      if (res.status === 401) throw new InvalidJoinTokenError()
      if (res.status === 400) throw new InvalidInputError(body.message ?? 'the member refused the join')
      lastError = new ServerError(`member ${base} answered ${res.status}: ${body.message ?? ''}`)
    } catch (err) {
      if (err instanceof InvalidJoinTokenError || err instanceof InvalidInputError) throw err
      log.warn({ url: base, err: (err as Error).message }, 'could not reach cluster member')
      lastError = err
    }
  }
  throw lastError instanceof Error && 'status' in lastError ? lastError : new ServerError(`could not reach any cluster member: ${(lastError as Error).message}`)
}

/**
 * Starts from the member's document instead of an empty one. Best effort: whatever fails here, the sync protocol
 * still brings the document (only slower). Returns the snapshot's size, 0 when none was adopted.
 */
export async function adoptMemberDocument (state: ClusterState, member: string, token: string, clusterId: string, log: Logger): Promise<number> {
  try {
    const res = await fetch(`${member}/v1/internal/cluster/join-document`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token }),
      signal: AbortSignal.timeout(10_000)
    })
    if (!res.ok) throw new Error(`member answered ${res.status}`)
    const snapshot = new Uint8Array(await res.arrayBuffer())
    await state.adopt(snapshot, member, doc => {
      if (doc.cluster?.id !== clusterId) throw new Error(`the member's document is of cluster '${doc.cluster?.id ?? ''}', not '${clusterId}'`)
    })
    return snapshot.length
  } catch (err) {
    log.warn({ member, err: (err as Error).message }, 'could not start from the member\'s document; syncing it instead')
    return 0
  }
}

/** Whether the member's API already lists this host. */
export async function listedBy (member: string, hostId: string): Promise<boolean> {
  const res = await fetch(`${member}/v1/hosts/${encodeURIComponent(hostId)}`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined)
  await res?.body?.cancel()
  return res?.status === 200
}
