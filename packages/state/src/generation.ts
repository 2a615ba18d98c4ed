import { createHash } from 'node:crypto'
import * as A from '@automerge/automerge'
import type { ClusterDoc, DocumentGeneration } from '@pgmesh/model'
import { type ChangeMeta, decodeChangeMeta, encodeChangeMeta } from './doc.js'
import { bucketedContent, flatContent, isBucketed, writesBuckets } from './buckets.js'
import { readMerged } from './merged-read.js'
import { plainStrings, stringWriter, writesScalarStrings } from './scalar-strings.js'
import { deepEqual } from './write-diff.js'

type Doc = A.Doc<Partial<ClusterDoc>>
type MapProxy = Record<string, unknown>

/**
 * The leaderless compaction rule (see the README, "History and generations"): a new document generation may start
 * from `frontier` once every member's acknowledged heads descend from it. Members silent for longer than the
 * cluster's `maxSilenceMs` are not waited for (they are the ones a later merge may refuse).
 */
export interface FrontierCheck {
  ok: boolean
  /** Members whose acknowledged heads do not include the frontier yet (or who acknowledged nothing). */
  waitingFor: string[]
  /** Members not waited for because they have been silent too long; they can merge later only if they hold the frontier. */
  notWaitedFor: string[]
}

export interface MemberAck {
  /** The heads the member reported it holds. */
  heads: A.Heads
  /** When it last reported (ms). */
  at: number
}

export function checkFrontier (
  doc: Doc, frontier: A.Heads, members: readonly string[], acks: ReadonlyMap<string, MemberAck>,
  options: { now: number, maxSilenceMs: number }
): FrontierCheck {
  if (!A.hasHeads(doc, frontier)) throw new Error('the frontier is not in this document')
  const waitingFor: string[] = []
  const notWaitedFor: string[] = []
  for (const member of members) {
    const ack = acks.get(member)
    if (ack !== undefined && options.now - ack.at > options.maxSilenceMs) { notWaitedFor.push(member); continue }
    if (ack === undefined || !includesFrontier(doc, ack.heads, frontier)) waitingFor.push(member)
  }
  return { ok: waitingFor.length === 0, waitingFor, notWaitedFor }
}

/** Whether every change of `frontier` is an ancestor of (or one of) `heads`; false when `doc` lacks `heads`. */
export function includesFrontier (doc: Doc, heads: A.Heads, frontier: A.Heads): boolean {
  if (!A.hasHeads(doc, heads)) return false
  // The changes not among `heads`' ancestors: the frontier must have none of them.
  const after = new Set(A.getChangesMetaSince(doc, heads).map(c => c.hash))
  return frontier.every(h => !after.has(h))
}

/**
 * The first document of the generation after `doc`'s, holding `doc`'s content at `frontier` and no history. Every
 * host computes the same bytes from the same frontier (actor derived from the frontier, time 0, keys in order), so
 * hosts that start the generation independently hold one genesis change, not concurrent copies of it. Maps created
 * concurrently are merged key by key (`readMerged`); a leaf key with concurrent values keeps the value Automerge
 * shows (its conflict is settled by the compaction). `prune` (deterministic: it sees only the content and the
 * frontier's time) takes out of the content what leaves the document with the compaction.
 */
export function startGeneration (doc: Doc, frontier: A.Heads, prune?: (content: Record<string, unknown>, frontierAt: number) => void): Doc {
  if (!A.hasHeads(doc, frontier)) throw new Error('the frontier is not in this document')
  const heads = [...frontier].sort()
  const previous = doc.generation === undefined ? undefined : plainStrings(A.view(doc, heads).generation)
  const number = (previous?.number ?? 1) + 1
  const generation: DocumentGeneration = {
    number,
    frontiers: [...(previous?.frontiers.map(f => ({ number: f.number, heads: [...f.heads] })) ?? []), { number, heads }]
  }
  const content = flatContent(readMerged(doc, [], heads)?.value ?? {})
  // What leaves the document with the compaction (records that never change again), decided from `frontier` alone.
  prune?.(content, frontierTime(doc, heads))
  const actor = createHash('sha256').update(`pgmesh-generation:${number}:${heads.join(',')}`).digest('hex').slice(0, 32)
  const meta: ChangeMeta = { host: 'generation', at: 0, op: 'generation.start', entity: String(number) }
  let next = A.init<Partial<ClusterDoc>>({ actor })
  // Strings as scalars once every host reads them: decided by the content, so every host writes the same genesis.
  const scalar = writesScalarStrings(content)
  // Buckets once every host reads them (see buckets.ts): this is where a flat document is rewritten. Never back.
  const laidOut = isBucketed(doc) || writesBuckets(content) ? bucketedContent(content) : content
  next = A.change(next, { message: encodeChangeMeta(meta), time: 0 }, d => {
    const root = stringWriter(d as MapProxy, scalar)
    for (const [key, value] of sortedEntries({ ...laidOut, generation })) root[key] = value
  })
  // The genesis is shared by every host; a host's own changes must come from its own actor.
  return plainStrings(A.clone(next))
}

/** The latest wall-clock time among the frontier's changes: the same on every host that holds the frontier. */
export function frontierTime (doc: Doc, frontier: A.Heads): number {
  let at = 0
  for (const hash of frontier) {
    const meta = decodeChangeMeta(A.inspectChange(doc, hash)?.message ?? null)
    if (meta !== undefined && meta.at > at) at = meta.at
  }
  return at
}

/**
 * Why a host's edits made on an older generation cannot be merged into the cluster's: it never held the frontier
 * the cluster compacted at (it was silent longer than the cluster waits), so what it changed is relative to history
 * no member keeps. `unmerged` lists this host's own changes the cluster cannot be shown to have.
 */
export class GenerationGapError extends Error {
  constructor (
    readonly localGeneration: number,
    readonly clusterGeneration: number,
    readonly unmerged: ChangeMeta[]
  ) {
    super(`this host's cluster document is generation ${localGeneration}, the cluster compacted to generation ` +
      `${clusterGeneration} from a point this host never reached; its ${unmerged.length} change(s) made since its ` +
      `last sync cannot be merged and are lost${unmerged.length === 0 ? '' : ` (${describe(unmerged)})`}. ` +
      'Recover by removing the host from the cluster, wiping its data directory and joining it again, then repeating ' +
      'those changes through the API.')
    this.name = 'GenerationGapError'
  }
}

/**
 * Carries the edits `old` (a host's document of an earlier generation) made after the boundary the cluster compacted
 * at into `target` (a change on the cluster's current generation). Only this host's own changes after the frontier
 * are replayed, as a three-way diff (value at the frontier plus others' later changes → value with its own): others'
 * changes reach the new generation from their own hosts, and replaying a stale copy of them could undo newer edits.
 * Returns how many own changes were replayed. Throws `GenerationGapError` when `old` lacks the frontier.
 */
export function replayOwnEdits (old: Doc, current: Doc, target: MapProxy, isOwn: (meta: ChangeMeta | undefined) => boolean): number {
  const localGeneration = old.generation?.number ?? 1
  const clusterGeneration = current.generation?.number ?? 1
  const boundary = current.generation?.frontiers.find(f => f.number === localGeneration + 1)
  if (boundary === undefined) throw new Error(`the cluster's document has no boundary after generation ${localGeneration}`)
  const since = A.getChangesMetaSince(old, A.hasHeads(old, boundary.heads) ? boundary.heads : [])
  if (!A.hasHeads(old, boundary.heads)) {
    const unmerged = since.map(c => decodeChangeMeta(c.message)).filter((m): m is ChangeMeta => m !== undefined && isOwn(m))
    throw new GenerationGapError(localGeneration, clusterGeneration, unmerged)
  }
  const own = new Set<string>()
  // A change after the frontier that descends from an own one carries its effect: treat it as own too.
  for (const c of since) {
    if (isOwn(decodeChangeMeta(c.message)) || c.deps.some(d => own.has(d))) own.add(c.hash)
  }
  if (own.size === 0) return 0
  const others = since.filter(c => !own.has(c.hash))
  const baseHeads = headsOf([...boundary.heads], others)
  const base = flatContent(readMerged(old, [], baseHeads)?.value ?? {})
  const mine = flatContent(readMerged(old, [], A.getHeads(old))?.value ?? {})
  delete base.generation
  delete mine.generation
  replay(target, base, mine)
  return since.filter(c => isOwn(decodeChangeMeta(c.message))).length
}

/** The heads of the frontier's closure plus `extra` changes (each of whose deps is in that closure). */
function headsOf (frontier: string[], extra: ReadonlyArray<{ hash: string, deps: string[] }>): string[] {
  const heads = new Set(frontier)
  for (const c of extra) {
    for (const d of c.deps) heads.delete(d)
    heads.add(c.hash)
  }
  return [...heads].sort()
}

/** Writes into `target` what changed from `base` to `mine`, key by key; untouched keys keep `target`'s values. */
function replay (target: MapProxy, base: Record<string, unknown>, mine: Record<string, unknown>): void {
  for (const key of new Set([...Object.keys(base), ...Object.keys(mine)])) {
    const was = base[key]
    const now = mine[key]
    if (deepEqual(was, now)) continue
    const into = target[key]
    if (now === undefined) delete target[key]
    else if (isMap(was) && isMap(now) && isMap(into)) replay(into as MapProxy, was, now)
    else target[key] = structuredClone(now)
  }
}

function isMap (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function sortedEntries (value: Record<string, unknown>): Array<[string, unknown]> {
  return Object.keys(value).sort().map(k => [k, sortDeep(value[k])])
}

/** Plain JSON with map keys in order, so every host's genesis writes the same operations in the same order. */
function sortDeep (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep)
  if (isMap(value)) return Object.fromEntries(sortedEntries(value))
  return value
}

function describe (metas: ChangeMeta[]): string {
  const shown = metas.slice(0, 10).map(m => `${m.op}${m.entity === undefined ? '' : ` ${m.entity}`} at ${new Date(m.at).toISOString()}`)
  return shown.join('; ') + (metas.length > 10 ? `; and ${metas.length - 10} more` : '')
}
