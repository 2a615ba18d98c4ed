import * as A from '@automerge/automerge'
import type { Logger } from 'pino'
import type { Startable } from '@pgmesh/model'
import type { ClusterState, Doc } from './cluster-state.js'
import { checkFrontier, type MemberAck } from './generation.js'
import { holdsFlatToRewrite } from './buckets.js'
import { holdsTextToRewrite } from './scalar-strings.js'

export interface CompactionPolicy {
  /** Start the next generation once the document holds at least this many changes of its current generation. */
  afterChanges: number
  /** A member silent for longer is not waited for (see the README's rule); default 45 days. */
  maxSilenceMs?: number
  /** How often the policy is checked; default 10 s. */
  checkMs?: number
}

export interface CompactorDeps {
  state: ClusterState
  /** This host's id and peer id. */
  hostId: string
  peerId: () => string | undefined
  /** Every member of the cluster (hosts of the document), with its peer id ('' until it registered one). */
  members: () => ReadonlyArray<{ hostId: string, peerId: string }>
  /** What each peer last acknowledged holding (DocReplicator.acknowledgements). */
  acknowledgements: () => ReadonlyMap<string, MemberAck>
  /** The next generation's genesis from a frontier (ClusterDocument.startGeneration: it knows what to prune). */
  startGeneration: (doc: Doc, frontier: A.Heads) => Doc
  /** Moves this host to it (ClusterDocument.enterGeneration: it archives what the genesis pruned). */
  enterGeneration: (next: Doc) => Promise<number>
  logger: Logger
}

/**
 * Starts the next document generation when the policy says the history is long enough and every member acknowledged
 * the frontier. Only one host starts it: the member with the smallest host id (every host reads the same members from
 * the converged document), so two hosts never start one generation from two frontiers (their geneses would differ and
 * could never sync; the replicator refuses that case if it happens anyway). The others move when the replicator hears
 * of the later generation. While that member is down, nobody compacts; removing it hands the role on.
 */
export class Compactor implements Startable {
  private timer: NodeJS.Timeout | undefined
  private frontier: A.Heads | undefined
  private running = false
  private readonly maxSilenceMs: number
  /** Why the last check did not start a generation, for the operator (and tests). */
  lastCheck: { at: number, outcome: string, waitingFor?: string[] } | undefined

  constructor (private readonly deps: CompactorDeps, private readonly policy: CompactionPolicy) {
    this.maxSilenceMs = policy.maxSilenceMs ?? 45 * 24 * 3600 * 1000
  }

  start (): void {
    this.timer = setInterval(() => { void this.check() }, this.policy.checkMs ?? 10_000)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** One check of the policy; resolves to whether this host started a new generation. */
  async check (): Promise<boolean> {
    if (this.running) return false
    this.running = true
    try {
      return await this.checkOnce()
    } catch (err) {
      this.deps.logger.error({ err }, 'document compaction failed')
      this.note('failed')
      return false
    } finally {
      this.running = false
    }
  }

  private async checkOnce (): Promise<boolean> {
    const { state } = this.deps
    const members = this.deps.members()
    const starter = members.map(m => m.hostId).sort()[0]
    if (starter !== this.deps.hostId) return this.note('another member starts generations')
    // A document from before scalar strings or buckets is rewritten once every host reads them, whatever its history's length.
    if (state.changes().length < this.policy.afterChanges && !holdsTextToRewrite(state.automergeDoc) && !holdsFlatToRewrite(state.automergeDoc)) return this.note('history below the threshold')
    const self = this.deps.peerId()
    if (self === undefined) return this.note('not on the mesh')
    // A frontier from an earlier generation means nothing now; a fresh one is every change this host holds.
    if (this.frontier === undefined || !state.hasHeads(this.frontier)) this.frontier = state.heads()
    const acks = new Map(this.deps.acknowledgements())
    acks.set(self, { heads: state.heads(), at: Date.now() })
    const peers = members.map(m => m.peerId === '' ? `host ${m.hostId} (no peer yet)` : m.peerId)
    const check = checkFrontier(state.automergeDoc, this.frontier, peers, acks, { now: Date.now(), maxSilenceMs: this.maxSilenceMs })
    if (!check.ok) return this.note('waiting for members to acknowledge the frontier', check.waitingFor)
    const frontier = this.frontier
    const next = this.deps.startGeneration(state.automergeDoc, frontier)
    const before = state.sizeBytes()
    const replayed = await this.deps.enterGeneration(next)
    this.frontier = undefined
    this.deps.logger.info({ generation: next.generation?.number, frontier, replayed, bytesBefore: before, bytesAfter: state.sizeBytes(), notWaitedFor: check.notWaitedFor },
      'started a new document generation')
    this.note('started a generation')
    return true
  }

  private note (outcome: string, waitingFor?: string[]): false {
    this.lastCheck = { at: Date.now(), outcome, ...(waitingFor === undefined ? {} : { waitingFor }) }
    return false
  }
}
