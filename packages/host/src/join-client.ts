import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { DOCUMENT_FORMAT_HEADER, InvalidInputError, InvalidJoinTokenError, ServerError } from '@pgmesh/model'
import { fingerprint } from '@pgmesh/pki'
import { type ClusterState, DOCUMENT_FORMAT } from '@pgmesh/state'
import type { Logger } from 'pino'
import type { JoinCredentials, MemberTls } from './tls.js'

export interface JoinOptions {
  cluster_id: string
  cluster_key: string
  /** The cluster's data key (hex), which seals the specs' secrets; absent from members that predate it. */
  data_key?: string
  /** Multiaddrs of every known host, the answering host first. */
  bootstrap: string[]
  /** The answering host's document heads: the joiner has converged once it holds them. */
  heads: string[]
  /** auto TLS: the cluster CA (with its key) and the joiner's own certificate, base64 PEM (the anchor's shape). */
  credentials?: JoinCredentials
}

interface MemberResponse { status: number, body: Buffer }

/**
 * One request to another member's API. Not fetch: Node's fetch cannot be given a CA or a client certificate
 * without undici's own Agent; node:https takes them as they are. `tls` undefined: plain HTTP, or HTTPS without
 * verifying the server (only to fetch a CA that is then checked against the join token's fingerprint).
 */
export async function memberRequest (url: string, init: { method: string, body?: string, tls?: MemberTls | 'unverified', timeoutMs: number }): Promise<MemberResponse> {
  const target = new URL(url)
  const https = target.protocol === 'https:'
  const tlsOptions = !https ? {} : init.tls === 'unverified' || init.tls === undefined ? { rejectUnauthorized: false } : { ...init.tls, rejectUnauthorized: true }
  return await new Promise((resolve, reject) => {
    // The document format this host reads: a member refuses a host that reads less than its document's format.
    const headers: Record<string, string> = {
      [DOCUMENT_FORMAT_HEADER]: String(DOCUMENT_FORMAT),
      ...(init.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(init.body)) })
    }
    const req = (https ? httpsRequest : httpRequest)(target, { method: init.method, headers, ...tlsOptions, timeout: init.timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error(`no answer within ${init.timeoutMs} ms`)) })
    req.on('error', reject)
    req.end(init.body)
  })
}

/**
 * auto TLS: the CA a member serves, trusted only when its fingerprint is the one in the join token (the anchor's
 * token carries the root CA's fingerprint for this).
 */
export async function fetchMemberCa (base: string, expectedFingerprint: string): Promise<string> {
  const res = await memberRequest(`${base}/v1/internal/cluster/ca`, { method: 'GET', tls: 'unverified', timeoutMs: 5000 })
  const ca = res.status === 200 ? (JSON.parse(res.body.toString('utf8')) as { ca_cert?: string }).ca_cert : undefined
  if (ca === undefined) throw new ServerError(`member ${base} serves no cluster CA (answered ${res.status})`)
  if (fingerprint(ca) !== expectedFingerprint) throw new InvalidJoinTokenError('the member\'s CA is not the one the join token names')
  return ca
}

/**
 * The join options, and the base URL of the member that gave them: the first of `serverUrls` that answers.
 * `trust(base)` gives the TLS settings for a member (its CA, this host's client certificate), for https members.
 */
export async function fetchJoinOptions (serverUrls: string[], token: string, hostId: string, log: Logger, trust: (base: string) => Promise<MemberTls | undefined> = async () => undefined, names: readonly string[] = []): Promise<{ options: JoinOptions, member: string, tls: MemberTls | undefined }> {
  let lastError: unknown = new ServerError('no server URL answered')
  for (const url of serverUrls) {
    const base = url.replace(/\/+$/, '')
    try {
      const tls = base.startsWith('https:') ? await trust(base) : undefined
      const res = await memberRequest(`${base}/v1/internal/cluster/join-options`, {
        method: 'POST', body: JSON.stringify({ token, host_id: hostId, ...(tls === undefined ? {} : { names }) }), timeoutMs: 5000, ...(tls === undefined ? {} : { tls })
      })
      if (res.status === 200) return { options: JSON.parse(res.body.toString('utf8')) as JoinOptions, member: base, tls }
      const body = parseError(res.body)
      if (res.status === 401) throw new InvalidJoinTokenError()
      if (res.status === 400) throw new InvalidInputError(body.message ?? 'the member refused the join')
      lastError = new ServerError(`member ${base} answered ${res.status}`)
    } catch (err) {
      if (err instanceof InvalidJoinTokenError || err instanceof InvalidInputError) throw err
      log.warn({ url: base, err: (err as Error).message }, 'could not reach cluster member')
      lastError = err
    }
  }
  throw lastError instanceof Error && 'status' in lastError ? lastError : new ServerError(`could not reach any cluster member: ${(lastError as Error).message}`)
}

function parseError (body: Buffer): { name?: string, message?: string } {
  try { return JSON.parse(body.toString('utf8')) as { name?: string, message?: string } } catch { return {} }
}

/**
 * Starts from the member's document instead of an empty one. Best effort: whatever fails here, the sync protocol
 * still brings the document (only slower). Returns the snapshot's size, 0 when none was adopted.
 */
export async function adoptMemberDocument (state: ClusterState, member: string, token: string, clusterId: string, log: Logger, tls?: MemberTls): Promise<number> {
  try {
    const res = await memberRequest(`${member}/v1/internal/cluster/join-document`, {
      method: 'POST', body: JSON.stringify({ token }), timeoutMs: 10_000, ...(tls === undefined ? {} : { tls })
    })
    if (res.status !== 200) throw new Error(`member answered ${res.status}`)
    const snapshot = new Uint8Array(res.body)
    await state.adopt(snapshot, member, doc => {
      if (doc.cluster?.id !== clusterId) throw new Error(`the member's document is of cluster '${doc.cluster?.id ?? ''}', not '${clusterId}'`)
    })
    return snapshot.length
  } catch (err) {
    log.warn({ member, err: (err as Error).message }, 'could not start from the member\'s document; syncing it instead')
    return 0
  }
}

/**
 * What a member says of this host: `listed`, or `removed` when it has no such host or (TLS) refuses this host's
 * certificate as not a member's, or undefined (no answer, another answer). Only a member whose certificate the
 * cluster CA signed is asked over https.
 */
export async function memberAnswer (member: string, hostId: string, tls?: MemberTls): Promise<'listed' | 'removed' | undefined> {
  if (member.startsWith('https:') && tls === undefined) return undefined
  const res = await memberRequest(`${member}/v1/hosts/${encodeURIComponent(hostId)}`, { method: 'GET', timeoutMs: 2000, ...(tls === undefined ? {} : { tls }) }).catch(() => undefined)
  if (res === undefined) return undefined
  if (res.status === 200) return 'listed'
  const message = parseError(res.body).message ?? ''
  const removed = (res.status === 404 && message === 'no host found with the given ID') ||
    (res.status === 401 && message === `the certificate of '${hostId}' is not of a member of this cluster`)
  return removed ? 'removed' : undefined
}

/**
 * Hands this host's own record (the changes that wrote it) to the member it joined through, which then lists it at
 * once. Best effort: without it the record reaches the member over the mesh.
 */
export async function sendOwnRecord (member: string, token: string, changes: Uint8Array, log: Logger, tls?: MemberTls): Promise<void> {
  const res = await memberRequest(`${member}/v1/internal/cluster/join-record`, {
    method: 'POST', body: JSON.stringify({ token, changes: Buffer.from(changes).toString('base64') }), timeoutMs: 2000, ...(tls === undefined ? {} : { tls })
  }).catch((err: unknown) => { log.debug({ member, err: (err as Error).message }, 'could not hand the member this host\'s record'); return undefined })
  if (res !== undefined && res.status !== 204) log.debug({ member, status: res.status }, 'the member did not take this host\'s record')
}

/** Whether the member's API already lists this host (asked with this host's own identity once it has one). */
export async function listedBy (member: string, hostId: string, tls?: MemberTls): Promise<boolean> {
  const res = await memberRequest(`${member}/v1/hosts/${encodeURIComponent(hostId)}`, { method: 'GET', timeoutMs: 2000, ...(tls === undefined ? {} : { tls }) }).catch(() => undefined)
  return res?.status === 200
}
