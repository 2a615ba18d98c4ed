/**
 * A lease on a key (a node of a database) that a majority of voters (the cluster's hosts) grant for a short time.
 * See the package README for the safety argument.
 */

export interface LeaseRequest {
  key: string
  /** Who the lease is for (an instance id). */
  holder: string
  term: number
  durationMs: number
  /** Gives the lease back early (only the current holder at its term can). */
  release?: boolean
  /** A holder's say on who may take the lease after it (see Eligibility); candidates send none. */
  eligibility?: Eligibility
}

/**
 * Who may take over from a holder: its instances that hold everything it acknowledged. Voters keep the newest one
 * (by term, then version) that a holder sent with a granted request, so a majority always knows the holder's last
 * word before it acted on it.
 */
export interface Eligibility {
  term: number
  /** Strictly increasing per holder, across restarts too (wall-clock based). */
  version: number
  eligible: string[]
}

export function newer (a: Eligibility | undefined, b: Eligibility | undefined): Eligibility | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  return a.term > b.term || (a.term === b.term && a.version >= b.version) ? a : b
}

export interface LeaseReply {
  granted: boolean
  /** The highest term this voter has granted for the key. */
  term: number
  /** Who holds the voter's grant at that term (even an expired one). */
  holder?: string
  eligibility?: Eligibility
  /** How long a grant lasts on the voter's clock: at most its own maximum, so hosts configured apart stay safe. */
  durationMs?: number
  /**
   * A refusal because another holder's grant still runs (or the voter is still quiet after a restart): how long that
   * lasts on the voter's clock. A hint for when to ask again; the voter decides anew then.
   */
  busyForMs?: number
}

interface Grant { holder: string | undefined, term: number, expiresAt: number }

/**
 * How often a holder renews per lease duration. The dead holder's grants end one lease after its last renewal, so
 * renewing more often brings a failover closer to one lease; and a holder stalled for up to
 * `duration - drift - fenceMs - duration / RENEWALS_PER_LEASE` still renews before it must fence.
 */
export const RENEWALS_PER_LEASE = 5

/** Monotonic milliseconds: wall clock jumps never shorten or stretch a lease. */
export const monotonicNow = (): number => performance.now()

/**
 * One voter's memory of the grants it gave. It measures a grant's expiry on its own monotonic clock from the
 * moment it received the request, so it never expires before the holder's own (earlier-starting) count.
 */
export class LeaseVoter {
  private readonly grants = new Map<string, Grant>()
  private readonly eligibility = new Map<string, Eligibility>()
  private readonly quietUntil: number

  constructor (private readonly options: { maxDurationMs: number, now?: () => number }) {
    // A restarted voter has forgotten the grants it gave: it grants nothing until any of them has expired.
    this.quietUntil = this.now() + options.maxDurationMs
  }

  private now (): number {
    return (this.options.now ?? monotonicNow)()
  }

  /**
   * Answers a request that came from another host: `speaksFor(holder)` says whether the sending host may act for that
   * holder (its own instance). A request for someone else's instance is a hand-over, taken only from the host of the
   * holder this voter granted last (the primary handing its node to a replica); a release only from the holder's
   * own host. undefined: refused, not answered (the caller logs and counts it).
   */
  answerFrom (request: LeaseRequest, speaksFor: (holder: string) => boolean): LeaseReply | undefined {
    if (typeof request !== 'object' || request === null || typeof request.key !== 'string' || typeof request.holder !== 'string' ||
      typeof request.term !== 'number' || typeof request.durationMs !== 'number') return undefined
    if (!speaksFor(request.holder)) {
      const last = this.grants.get(request.key)?.holder
      if (request.release === true || last === undefined || !speaksFor(last)) return undefined
    }
    return this.answer(request)
  }

  answer (request: LeaseRequest): LeaseReply {
    const now = this.now()
    const grant = this.grants.get(request.key) ?? { holder: undefined, term: 0, expiresAt: 0 }
    const known = (): Pick<LeaseReply, 'holder' | 'eligibility'> => {
      const eligibility = this.eligibility.get(request.key)
      return { ...(grant.holder === undefined ? {} : { holder: grant.holder }), ...(eligibility === undefined ? {} : { eligibility }) }
    }
    const refuse = (busyUntil?: number): LeaseReply => ({
      granted: false, term: grant.term, ...known(), ...(busyUntil === undefined ? {} : { busyForMs: Math.ceil(busyUntil - now) })
    })
    if (request.release === true) {
      if (grant.holder === request.holder && grant.term === request.term) grant.expiresAt = 0
      return refuse()
    }
    if (now < this.quietUntil) return refuse(this.quietUntil)
    const active = grant.holder !== undefined && now < grant.expiresAt
    if (active && grant.holder !== request.holder) return refuse(grant.expiresAt)
    if (request.term < grant.term) return refuse()
    // A term belongs to one holder for good: two candidates asking with the same term never both get a majority.
    if (request.term === grant.term && grant.holder !== undefined && grant.holder !== request.holder) return refuse()
    const duration = Math.min(Math.max(0, request.durationMs), this.options.maxDurationMs)
    grant.holder = request.holder
    grant.term = request.term
    grant.expiresAt = now + duration
    this.grants.set(request.key, grant)
    // Only the holder at this very term speaks for its term.
    if (request.eligibility !== undefined && request.eligibility.term === request.term) {
      const current = this.eligibility.get(request.key)
      this.eligibility.set(request.key, newer(current, request.eligibility) ?? request.eligibility)
    }
    return { granted: true, term: request.term, durationMs: duration, ...known() }
  }
}

/** How a client reaches the other voters. */
export interface LeaseTransport {
  /** The other voters (this host's own voter is asked directly). */
  voters: () => string[]
  ask: (voter: string, request: LeaseRequest, timeoutMs: number) => Promise<LeaseReply>
}

export interface LeaseOutcome {
  held: boolean
  /** On the caller's monotonic clock: the lease is surely still held before this moment. */
  validUntil: number
  granted: number
  voters: number
  /** The highest term any voter answered with (a candidate asks again above it). */
  highestTerm: number
  /** The newest eligibility any voter holds. */
  eligibility?: Eligibility
  /**
   * Not held: in how long at the earliest a majority may be free of other grants (0: now, at a higher term). Voters
   * that did not answer (a dead one refuses connections at once, and the request settles without the live ones
   * still on their way) may take longer: asking then gets a refusal with a fresh hint.
   */
  freeInMs?: number
}

export interface LeaseOptions {
  durationMs: number
  /** Subtracted from the holder's count for clock-rate drift between hosts. */
  driftMs: number
  now?: () => number
}

/** Asks every voter at once; a majority of all voters (this one included) holds the lease. */
export class Leases {
  constructor (readonly local: LeaseVoter, private readonly transport: LeaseTransport, readonly options: LeaseOptions) {}

  now (): number {
    return (this.options.now ?? monotonicNow)()
  }

  async request (key: string, holder: string, term: number, eligibility?: Eligibility): Promise<LeaseOutcome> {
    // Counted from before the request leaves, so the holder's count ends before any voter's.
    const start = this.now()
    const request: LeaseRequest = { key, holder, term, durationMs: this.options.durationMs, ...(eligibility === undefined ? {} : { eligibility }) }
    const remote = this.transport.voters()
    const voters = remote.length + 1
    const majority = Math.floor(voters / 2) + 1
    const timeoutMs = Math.max(100, Math.floor(this.options.durationMs / 4))
    const replies: Array<LeaseReply | undefined> = [this.local.answer(request)]
    // Settled as soon as a majority granted or can no longer grant: a dead voter must not delay a renewal.
    await new Promise<void>((resolve) => {
      let pending = remote.length
      const check = (): void => {
        const granted = replies.filter(r => r?.granted === true).length
        if (granted >= majority || granted + pending < majority || pending === 0) resolve()
      }
      check()
      for (const voter of remote) {
        void this.transport.ask(voter, request, timeoutMs).catch(() => undefined).then((reply) => {
          replies.push(reply)
          pending--
          check()
        })
      }
    })
    const answered = [...replies]
    const granted = answered.filter(r => r?.granted === true).length
    // A voter with a shorter maximum (another --lease-ms) grants less: the holder counts the shortest grant.
    const shortest = Math.min(this.options.durationMs, ...answered.filter(r => r?.granted === true).map(r => r?.durationMs ?? this.options.durationMs))
    const validUntil = start + shortest - this.options.driftMs
    const held = granted >= majority && this.now() < validUntil
    const highestTerm = Math.max(term, ...answered.map(r => r?.term ?? 0))
    const newest = answered.reduce<Eligibility | undefined>((best, r) => newer(best, r?.eligibility), undefined)
    // Told when the grants in its way end, a candidate can ask again right then instead of on its next round.
    const waits = answered.filter((r): r is LeaseReply => r !== undefined).map(r => r.busyForMs ?? 0).sort((a, b) => a - b)
    const freeInMs = held ? undefined : waits[Math.min(majority, waits.length) - 1]
    return { held, validUntil, granted, voters, highestTerm, ...(newest === undefined ? {} : { eligibility: newest }), ...(freeInMs === undefined ? {} : { freeInMs }) }
  }

  /** Best effort: lets the others take the lease at once instead of after its expiry. */
  async release (key: string, holder: string, term: number): Promise<void> {
    const request: LeaseRequest = { key, holder, term, durationMs: 0, release: true }
    this.local.answer(request)
    await Promise.all(this.transport.voters().map(async voter => await this.transport.ask(voter, request, 1000).catch(() => undefined)))
  }

  /**
   * Holds a lease: renews it RENEWALS_PER_LEASE times per duration and calls onLost when it was not renewed in time,
   * `fenceMs` before it would expire, so the holder can stop writes before any voter may grant it to another.
   * `mayHoldAlready`: the holder may still be writing under a grant an earlier process got (a daemon restarted beside
   * its running primary), so without a grant of its own within a lease duration, minus the margin, it is lost too.
   */
  keep (key: string, holder: string, term: number, fenceMs: number, onLost: () => void, mayHoldAlready = false): KeptLease {
    return new KeptLease(this, key, holder, term, fenceMs, onLost, mayHoldAlready)
  }
}

export class KeptLease {
  private validUntil = 0
  private stopped = false
  private lostTimer: NodeJS.Timeout | undefined
  private renewTimer: NodeJS.Timeout | undefined
  private lostReported = false
  private eligibility: Eligibility
  private confirmed: string[] = []
  private attempted: string[] = []
  private renewing: Promise<void> = Promise.resolve()

  constructor (
    private readonly leases: Leases, readonly key: string, readonly holder: string, readonly term: number,
    private readonly fenceMs: number, private readonly onLost: () => void, mayHoldAlready: boolean
  ) {
    this.eligibility = { term, version: nextVersion(), eligible: [] }
    if (mayHoldAlready) {
      // The earlier grant runs for at most a lease duration from now: fence before it may end unless renewed.
      this.lostTimer = setTimeout(() => { this.reportLost() }, Math.max(0, leases.options.durationMs - fenceMs))
      this.lostTimer.unref()
    }
    void this.renew()
  }

  /** Who may take over now; the holder acts on a change only once this returns true (a majority has it). */
  async setEligible (eligible: string[]): Promise<boolean> {
    const list = [...eligible].sort()
    this.eligibility = { term: this.term, version: nextVersion(), eligible: list }
    this.attempted = list
    await this.renewing
    const outcome = await this.leases.request(this.key, this.holder, this.term, this.eligibility).catch(() => undefined)
    if (outcome?.held !== true) return false
    this.confirmed = list
    this.extend(outcome.validUntil)
    return true
  }

  /** Everyone some voters may hold eligible: the last confirmed list and the last one tried (its fate unknown). */
  get eligible (): string[] {
    return [...new Set([...this.confirmed, ...this.attempted])].sort()
  }

  /** The list a majority confirmed last. */
  get confirmedEligible (): string[] {
    return this.confirmed
  }

  private extend (validUntil: number): void {
    if (validUntil <= this.validUntil) return
    this.validUntil = validUntil
    this.lostReported = false
    clearTimeout(this.lostTimer)
    const left = this.validUntil - this.fenceMs - this.leases.now()
    this.lostTimer = setTimeout(() => { this.reportLost() }, Math.max(0, left))
    this.lostTimer.unref()
  }

  /** The lease is held with at least the fencing margin left. */
  held (): boolean {
    return !this.stopped && this.leases.now() < this.validUntil - this.fenceMs
  }

  private async renew (): Promise<void> {
    if (this.stopped) return
    // Paced from the start of each renewal, so a slow voter does not stretch the interval.
    this.renewTimer = setTimeout(() => { void this.renew() }, Math.max(50, Math.floor(this.leases.options.durationMs / RENEWALS_PER_LEASE)))
    this.renewTimer.unref()
    const sent = this.eligibility
    const request = this.leases.request(this.key, this.holder, this.term, sent).catch(() => undefined)
    this.renewing = request.then(() => {})
    const outcome = await request
    if (this.stopped) return
    if (outcome?.held === true) {
      // A majority now holds the list this renewal carried (a later setEligible may have replaced it meanwhile).
      if (sent.eligible === this.attempted) this.confirmed = sent.eligible
      this.extend(outcome.validUntil)
    } else if (this.validUntil > 0 && !this.held()) {
      // Before the first grant, the timer set at the start decides.
      this.reportLost()
    }
  }

  private reportLost (): void {
    if (this.stopped || this.lostReported || this.held()) return
    this.lostReported = true
    this.onLost()
  }

  /** Stops renewing; with `release`, gives the lease back at once. */
  async stop (release = false): Promise<void> {
    this.stopped = true
    clearTimeout(this.lostTimer)
    clearTimeout(this.renewTimer)
    if (release) await this.leases.release(this.key, this.holder, this.term)
  }
}

let lastVersion = 0
/** Wall-clock based, so a restarted holder's versions still rise above those it sent before. */
function nextVersion (): number {
  lastVersion = Math.max(lastVersion + 1, Date.now())
  return lastVersion
}
