import { ServerBusyError, TooManyRequestsError } from '@pgmesh/model'
import type { Context, MiddlewareHandler } from 'hono'

/** Requests per second and burst of one client's token bucket. */
export interface RateBudget { perSecond: number, burst: number }

export interface RequestLimits {
  /** Creates, updates, deletes and operations of one client. */
  writes: RateBudget
  /** Everything else but health, of one client: much larger (reads are cheap and never queue behind the document). */
  reads: RateBudget
  /** Writes in flight on this host, all clients together; past it, 503 server_busy. */
  maxConcurrentWrites: number
}

/**
 * Generous on purpose: a person, the CLI, the test suite and the benchmarks never meet them; a runaway client or a
 * burst of thousands of creates does. Writes: a sustained 1,000/s per client and 2,000 at once; at most 32 writes in
 * flight (they take their turn at the document one by one, so more only queue, holding memory, and every one queued
 * is event-loop time a read waits behind; scripts/bench/burst.ts measures it).
 */
export const DEFAULT_REQUEST_LIMITS: RequestLimits = {
  writes: { perSecond: 1000, burst: 2000 },
  reads: { perSecond: 20_000, burst: 40_000 },
  maxConcurrentWrites: 32
}

/** Never limited: liveness, readiness and version must answer whatever else the host is doing. */
const HEALTH = new Set(['/livez', '/readyz', '/v1/version'])
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Who a request counts against: the remote address for now; an authenticated identity once there is one. */
export type ClientIdentity = (c: Context) => string

export const remoteAddress: ClientIdentity = (c) => {
  // @hono/node-server passes the Node request as env.incoming; app.request() in tests has none.
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined
  return env?.incoming?.socket?.remoteAddress ?? 'local'
}

/**
 * Token buckets keyed by client: each holds up to `burst` tokens and refills at `perSecond`. A small class rather
 * than a library: see the package README.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()

  constructor (private readonly budget: RateBudget, private readonly now: () => number = () => performance.now()) {}

  /** Takes a token: 0 when there was one, else the milliseconds until there will be. */
  take (key: string): number {
    const now = this.now()
    const { perSecond, burst } = this.budget
    const bucket = this.buckets.get(key) ?? { tokens: burst, at: now }
    bucket.tokens = Math.min(burst, bucket.tokens + (now - bucket.at) * perSecond / 1000)
    bucket.at = now
    if (!this.buckets.has(key)) {
      if (this.buckets.size >= 10_000) this.sweep(now)
      this.buckets.set(key, bucket)
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.ceil((1 - bucket.tokens) * 1000 / perSecond)
  }

  /** Forgets the clients whose buckets have refilled: they are as if new. */
  private sweep (now: number): void {
    const { perSecond, burst } = this.budget
    for (const [key, b] of this.buckets) if (b.tokens + (now - b.at) * perSecond / 1000 >= burst) this.buckets.delete(key)
  }
}

/** Whole seconds for Retry-After, at least 1. */
function seconds (ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000))
}

/**
 * Per-client rate limits (429 too_many_requests) and a bound on writes in flight on this host (503 server_busy),
 * both with Retry-After, checked before a body is read. Health is never limited.
 */
export function requestLimits (limits: RequestLimits = DEFAULT_REQUEST_LIMITS, identity: ClientIdentity = remoteAddress): MiddlewareHandler {
  const writes = new TokenBuckets(limits.writes)
  const reads = new TokenBuckets(limits.reads)
  let writesInFlight = 0
  return async (c, next) => {
    if (HEALTH.has(c.req.path)) { await next(); return }
    const isWrite = WRITE_METHODS.has(c.req.method)
    const wait = (isWrite ? writes : reads).take(identity(c))
    if (wait > 0) {
      const err = new TooManyRequestsError()
      err.retryAfterSeconds = seconds(wait)
      throw err
    }
    if (!isWrite) { await next(); return }
    if (writesInFlight >= limits.maxConcurrentWrites) {
      const err = new ServerBusyError()
      err.retryAfterSeconds = 1
      throw err
    }
    writesInFlight++
    try {
      await next()
    } finally {
      writesInFlight--
    }
  }
}
