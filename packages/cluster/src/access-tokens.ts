import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { type ApiRole, type ApiTokenRecord, InvalidInputError, InvalidJoinTokenError, type JoinTokenRecord, NotFoundError, rfc3339 } from '@pgmesh/model'
import type { ClusterState } from '@pgmesh/state'

/** Join tokens last a day unless asked otherwise (the anchor's tokens never expire; pgmesh's do). */
export const DEFAULT_JOIN_TOKEN_TTL_MS = 24 * 3600_000
const MAX_TTL_MS = 365 * 24 * 3600_000

/** An API token as listed: everything but its secret's hash. */
export type ApiTokenView = Omit<ApiTokenRecord, 'secret_sha256'>

/** `90`, `90s`, `15m`, `24h`, `7d` as milliseconds; a number alone is seconds. */
export function parseDuration (value: string | number, field: string): number {
  const match = /^(\d{1,9})(s|m|h|d)?$/.exec(String(value).trim())
  const unit = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[match?.[2] ?? 's'] ?? 1000
  const ms = Number(match?.[1] ?? Number.NaN) * unit
  if (match === null || ms <= 0 || ms > MAX_TTL_MS) throw new InvalidInputError(`${field}: must be a duration such as 3600, 15m, 24h or 7d, at most 365d`)
  return ms
}

/** Rounded up to the second (RFC 3339 without fractions): a token never expires before its time. */
function expiryAt (ms: number): string {
  return rfc3339(new Date(Math.ceil(ms / 1000) * 1000))
}

function sha256 (text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

function sameHex (a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y)
}

function expired (record: { expires_at?: string }, now: number): boolean {
  return record.expires_at !== undefined && Date.parse(record.expires_at) <= now
}

/**
 * Bearer tokens of the API, kept leaderlessly in the cluster document: any host creates or revokes one, every host
 * honours it once the document has converged. Only the secret's sha256 is stored; the secret is shown once.
 */
export class ApiTokens {
  constructor (private readonly state: ClusterState) {}

  async create (input: { name: string, role: ApiRole, expires_in?: string | number }): Promise<{ token: ApiTokenView, secret: string }> {
    const id = randomBytes(8).toString('hex')
    const secret = `pgm_${id}_${randomBytes(24).toString('base64url')}`
    const now = Date.now()
    const record: ApiTokenRecord = {
      id, name: input.name, role: input.role, secret_sha256: sha256(secret), created_at: rfc3339(new Date(now)),
      ...(input.expires_in === undefined ? {} : { expires_at: expiryAt(now + parseDuration(input.expires_in, 'expires_in')) })
    }
    await this.state.change({ op: 'token.create', entity: id }, (d) => {
      d.api_tokens ??= {}
      d.api_tokens[id] = record
    })
    return { token: view(record), secret }
  }

  list (): ApiTokenView[] {
    return Object.values(this.state.doc.api_tokens ?? {}).map(view).sort((a, b) => a.created_at.localeCompare(b.created_at))
  }

  async revoke (id: string): Promise<void> {
    if (this.state.doc.api_tokens?.[id] === undefined) throw new NotFoundError('no token found with the given ID')
    await this.state.change({ op: 'token.revoke', entity: id }, (d) => { if (d.api_tokens !== undefined) delete d.api_tokens[id] })
  }

  /** The role of a presented secret, or undefined when it is unknown, revoked or expired. Constant time in the secret. */
  verify (secret: string, now = Date.now()): { id: string, role: ApiRole } | undefined {
    const id = /^pgm_([0-9a-f]{16})_/.exec(secret)?.[1]
    const record = id === undefined ? undefined : this.state.doc.api_tokens?.[id]
    if (record === undefined || expired(record, now) || !sameHex(sha256(secret), record.secret_sha256)) return undefined
    return { id: record.id, role: record.role }
  }
}

function view (record: ApiTokenRecord): ApiTokenView {
  const { secret_sha256: _hash, ...rest } = record
  return { ...rest }
}

/**
 * Join tokens in the anchor's format `PGEDGE-<fingerprint>-<32 hex>`: the fingerprint names what the joiner will
 * trust (the cluster CA's certificate, or the cluster key without TLS), the random part is the secret, of which
 * the document keeps only the hash. Reusable until they expire or are revoked; a removed host cannot make new ones.
 */
export class JoinTokens {
  constructor (private readonly state: ClusterState, private readonly hostId: string) {}

  async issue (fingerprint: string, ttlMs = DEFAULT_JOIN_TOKEN_TTL_MS): Promise<{ token: string, id: string, expires_at: string }> {
    const secret = randomBytes(16).toString('hex')
    const id = randomBytes(8).toString('hex')
    const now = Date.now()
    const record: JoinTokenRecord = { id, secret_sha256: sha256(secret), created_at: rfc3339(new Date(now)), expires_at: expiryAt(now + ttlMs), issued_by: this.hostId }
    await this.state.change({ op: 'join-token.issue', entity: id }, (d) => {
      d.join_tokens ??= {}
      d.join_tokens[id] = record
    })
    return { token: `PGEDGE-${fingerprint}-${secret}`, id, expires_at: record.expires_at }
  }

  /** Throws InvalidJoinTokenError unless the token is outstanding and names `fingerprint`. */
  verify (token: string, fingerprint: string, now = Date.now()): void {
    const match = /^PGEDGE-([0-9a-f]{64})-([0-9a-f]{32})$/.exec(token)
    if (match === null || !sameHex(match[1] ?? '', fingerprint)) throw new InvalidJoinTokenError()
    const hash = sha256(match[2] ?? '')
    let found = false
    // Every record is compared, so the time taken says nothing about which one matched.
    for (const record of Object.values(this.state.doc.join_tokens ?? {})) {
      if (sameHex(hash, record.secret_sha256) && !expired(record, now)) found = true
    }
    if (!found) throw new InvalidJoinTokenError()
  }

  list (): Array<Omit<JoinTokenRecord, 'secret_sha256'>> {
    return Object.values(this.state.doc.join_tokens ?? {}).map(({ secret_sha256: _hash, ...rest }) => ({ ...rest }))
  }

  /** Revokes one token by id, or every outstanding one; returns how many. Expired records go too. */
  async revoke (id?: string): Promise<number> {
    const ids = Object.keys(this.state.doc.join_tokens ?? {}).filter(k => id === undefined || k === id)
    if (id !== undefined && ids.length === 0) throw new NotFoundError('no join token found with the given ID')
    if (ids.length === 0) return 0
    await this.state.change({ op: 'join-token.revoke', entity: id ?? '*' }, (d) => {
      for (const k of ids) if (d.join_tokens !== undefined) delete d.join_tokens[k]
    })
    return ids.length
  }
}
