import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import * as A from '@automerge/automerge'
import type { ClusterDoc } from '@pgmesh/model'
import type { Logger } from 'pino'
import { DocLog } from './doc-log.js'
import { type ChangeMeta, decodeChangeMeta, encodeChangeMeta } from './doc.js'
import { replayOwnEdits } from './generation.js'
import { BUCKETED_COLLECTIONS, bucketedContent, bucketWriter, checkReadable, flatConflictPath, flatContent, isBucketed, logicalPatches, logicalView, mergeBuckets, parentMap, rawPath } from './buckets.js'
import { ConcurrentWrites } from './concurrent-writes.js'
import { materializedMapAt, type MergedRead, readMaterialized, readMerged } from './merged-read.js'
import { plainStrings, plainStringsAfter, stringWriter, writesScalarStrings } from './scalar-strings.js'
import { type FieldConflict, keyConflict } from './write-diff.js'

export type Doc = A.Doc<Partial<ClusterDoc>>

export interface ChangeEvent {
  origin: 'local' | 'remote'
  before: A.Heads
  after: A.Heads
  /** The peer a remote change came from. */
  from?: string
  /** Metadata of the changes that arrived (remote) or were made (local). */
  changes: ChangeMeta[]
  /** A local change as written to the log (Automerge's incremental save of the changes since `before`): what gossip carries. */
  bytes?: Uint8Array
}

export interface ChangeRecord {
  hash: string
  actor: string
  deps: string[]
  meta: ChangeMeta | undefined
}

/** One move of this replica from a version to the next, with the patches Automerge made for it. */
interface Transition {
  before: A.Heads
  after: A.Heads
  patches: A.Patch[]
}

/**
 * Bounds of the transitions kept for `diff`: enough for a reader that looks after every few changes; one further
 * behind (or a change bigger than this) gets Automerge's diff instead.
 */
const KEPT_TRANSITIONS = 256
const KEPT_PATCHES = 20_000

export interface ClusterStateOptions {
  /** Directory of the snapshot and log. */
  dir: string
  hostId: string
  logger: Logger
}

/**
 * Owns this host's replica of the cluster document: every mutation, local or from a peer, goes through here, is
 * written to the document log, and is announced as a `change` event.
 */
export class ClusterState extends EventEmitter<{ change: [ChangeEvent] }> {
  private current: Doc
  private log!: DocLog
  private readonly hostId: string
  private readonly logger: Logger
  /** Bytes dropped from a torn log tail at open, for tests and metrics. */
  droppedBytesAtOpen = 0
  /** Which host made the changes of each Automerge actor (an actor is one process of one host). */
  private readonly actorHosts = new Map<string, string>()
  private readonly changeLog: ChangeRecord[] = []
  /** Where concurrent values may be, so current reads elsewhere take the materialized document as it is. */
  private readonly concurrentWrites = new ConcurrentWrites(hash => A.getBackend(this.current).getDecodedChangeByHash(hash)?.ops)
  /**
   * The latest transitions of `current`, oldest first, each starting where the one before ended: `diff` between two
   * versions in here concatenates their patches, which Automerge made anyway while applying them. Automerge's own
   * diff between two versions walks the whole document, the more the further apart they are: with 4 clients
   * creating databases on a host holding 2,500, it was 83% of the daemon's CPU.
   */
  private transitions: Transition[] = []
  private keptPatches = 0

  private constructor (options: ClusterStateOptions) {
    super()
    this.hostId = options.hostId
    this.logger = options.logger
    this.current = A.init<Partial<ClusterDoc>>()
  }

  static async open (options: ClusterStateOptions): Promise<ClusterState> {
    const state = new ClusterState(options)
    const { log, snapshot, records, droppedBytes } = await DocLog.open(options.dir, () => A.save(state.current), options.logger)
    state.log = log
    state.droppedBytesAtOpen = droppedBytes
    // A fresh actor id on every start: reusing one after a crash that lost local changes would forge history.
    const actor = randomBytes(16).toString('hex')
    // One load of the snapshot and log records together: a loadIncremental per record and a clone for the new actor
    // took 160 s for 36,000 changes, this takes 3 s. A long log (a crash before compaction) is first applied in
    // batches (`withLogApplied`): one load of 1,000 change records left 202 MB of WebAssembly memory, which never shrinks.
    const chunks = snapshot === undefined ? records : [snapshot, ...records]
    if (chunks.length === 0) state.current = A.init<Partial<ClusterDoc>>({ actor })
    else state.current = A.load<Partial<ClusterDoc>>(records.length < LOG_RECORDS_PER_BATCH ? concatenate(chunks) : withLogApplied(snapshot, records), { actor })
    plainStrings(state.current)
    checkReadable(state.current, `the cluster document in ${options.dir}`)
    state.indexChanges(A.getChangesMetaSince(state.current, []))
    return state
  }

  /** The document as readers see it (`logicalView`: databases and tasks as flat maps, whatever the layout). */
  get doc (): Doc {
    return logicalView(this.current)
  }

  /** The Automerge document itself, for Automerge's functions (save, sync, heads): its layout may differ from `doc`'s. */
  get automergeDoc (): Doc {
    return this.current
  }

  hasHeads (heads: A.Heads): boolean {
    return A.hasHeads(this.current, heads)
  }

  save (): Uint8Array {
    return A.save(this.current)
  }

  get initialized (): boolean {
    return this.current.cluster?.id !== undefined
  }

  heads (): A.Heads {
    return A.getHeads(this.current)
  }

  /** Creates the cluster's genesis change: the one ancestor every host's document descends from. */
  async initialize (clusterId: string): Promise<void> {
    if (this.initialized) throw new Error('cluster document is already initialized')
    await this.change({ op: 'cluster.init', entity: clusterId }, d => {
      // Every bucket at once, by the one change every host descends from (see buckets.ts). The token maps are made
      // with the cluster too, so two hosts adding the first token at once do not each create the map.
      Object.assign(d, bucketedContent({
        cluster: { id: clusterId, created_at: new Date().toISOString() }, hosts: {}, databases: {}, tasks: {}, removed_peers: {}, api_tokens: {}, join_tokens: {}
      }))
    })
  }

  /**
   * Applies a local change and resolves once it is durable on disk. Throws (and changes nothing) if `fn` throws.
   */
  async change (meta: Omit<ChangeMeta, 'host' | 'at'>, fn: (doc: ClusterDoc) => void): Promise<void> {
    const full: ChangeMeta = { host: this.hostId, at: Date.now(), ...meta }
    const before = A.getHeads(this.current)
    let patches: A.Patch[] | undefined
    // Before the cluster exists only `initialize` writes: on this version, which reads scalars.
    const scalar = this.current.cluster === undefined || writesScalarStrings(this.current)
    const bucketed = isBucketed(this.current)
    const next = A.change(this.current, { message: encodeChangeMeta(full), patchCallback: p => { patches = [...(patches ?? []), ...p] } }, d => {
      fn(bucketWriter(stringWriter(d, scalar), bucketed) as ClusterDoc)
    })
    const after = A.getHeads(next)
    if (sameHeads(before, after)) return
    this.current = withoutPatchCache(plainStringsAfter(next, patches ?? []))
    this.noteTransition(before, after, patches)
    this.indexChanges(A.getChangesMetaSince(next, before))
    const bytes = A.saveSince(next, before)
    const durable = this.log.append(bytes)
    this.emit('change', { origin: 'local', before, after, changes: [full], bytes })
    await durable
  }

  /**
   * Takes a member's whole document, on a host whose own is still empty (joining): one load instead of replaying the
   * member's history over the sync protocol, which costs about twice the time and far more memory. `accept` sees
   * the loaded document first; throwing from it (say, another cluster's document) leaves this one empty.
   */
  async adopt (snapshot: Uint8Array, from: string, accept: (doc: Doc) => void): Promise<void> {
    if (A.getHeads(this.current).length > 0) throw new Error('only an empty document can adopt a snapshot')
    const next = plainStrings(A.load<Partial<ClusterDoc>>(snapshot))
    checkReadable(next, `the cluster document from ${from}`)
    accept(logicalView(next))
    // Loading gives a fresh actor; the snapshot itself is the log record.
    await this.log.append(snapshot)
    this.current = next
    this.forgetTransitions()
    const metas = A.getChangesMetaSince(next, [])
    this.indexChanges(metas)
    const changes = metas.map(c => decodeChangeMeta(c.message)).filter((m): m is ChangeMeta => m !== undefined)
    this.emit('change', { origin: 'remote', before: [], after: A.getHeads(next), from, changes })
  }

  /**
   * Runs a document transformation from the replicator (a sync message, a gossiped change). The new changes are
   * logged in the background: the peer that sent them still has them if this host crashes before the write lands.
   * `fn` passes `options` on to the Automerge call (its `patchCallback` spares `diff` a walk of the whole document).
   */
  applyRemote<R>(from: string, fn: (doc: Doc, options: A.ApplyOptions<Partial<ClusterDoc>>) => [Doc, R]): R {
    const before = A.getHeads(this.current)
    let patches: A.Patch[] | undefined
    const [next, result] = fn(this.current, { patchCallback: p => { patches = [...(patches ?? []), ...p] } })
    const after = A.getHeads(next)
    this.current = next === this.current ? next : withoutPatchCache(patches === undefined ? plainStrings(next) : plainStringsAfter(next, patches))
    if (!sameHeads(before, after)) {
      this.noteTransition(before, after, patches)
      void this.log.append(A.saveSince(next, before)).catch((err: unknown) => {
        this.logger.error({ err }, 'failed to persist remote changes')
      })
      const metas = A.getChangesMetaSince(next, before)
      this.indexChanges(metas)
      const changes = metas.map(c => decodeChangeMeta(c.message)).filter((m): m is ChangeMeta => m !== undefined)
      this.emit('change', { origin: 'remote', before, after, from, changes })
    }
    return result
  }

  /**
   * Moves this replica to a later document generation (`startGeneration`'s genesis, or a member's document of it):
   * this host's own edits made after the generation's frontier are replayed onto it as one new change, the document
   * is snapshotted (the old history leaves the disk) and the change history starts again. Throws
   * `GenerationGapError`, changing nothing, when this host never held the frontier. Returns the replayed changes.
   */
  async enterGeneration (next: Doc): Promise<number> {
    const old = this.current
    if ((next.generation?.number ?? 1) <= (old.generation?.number ?? 1)) throw new Error('not a later generation')
    checkReadable(next, `generation ${next.generation?.number} of the cluster document`)
    let replayed = 0
    let doc = A.clone(next)
    const meta: ChangeMeta = { host: this.hostId, at: Date.now(), op: 'generation.replay', entity: String(next.generation?.number) }
    const scalar = writesScalarStrings(next)
    const bucketed = isBucketed(next)
    doc = plainStrings(A.change(doc, { message: encodeChangeMeta(meta) }, d => {
      replayed = replayOwnEdits(old, next, bucketWriter(stringWriter(d, scalar), bucketed) as unknown as Record<string, unknown>, m => m?.host === this.hostId)
    }))
    await this.log.flush()
    this.current = withoutPatchCache(doc)
    this.forgetTransitions()
    this.changeLog.length = 0
    this.concurrentWrites.reset()
    this.actorHosts.clear()
    this.indexChanges(A.getChangesMetaSince(doc, []))
    await this.log.compact()
    // From no heads: the old generation's heads mean nothing in the new one, so every reader rereads everything.
    this.emit('change', { origin: 'local', before: [], after: A.getHeads(doc), changes: replayed > 0 ? [meta] : [] })
    return replayed
  }

  /** The host an actor belongs to, when known. */
  hostOfActor (actor: string): string | undefined {
    return this.actorHosts.get(actor)
  }

  /** Every change this replica holds, with its metadata, in the order they were applied here. */
  changes (): readonly ChangeRecord[] {
    return this.changeLog
  }

  /** The document as it was at `heads` (a version from `changes()`). */
  viewAt (heads: A.Heads): Doc {
    if (!A.hasHeads(this.current, heads)) throw new Error(`unknown version ${heads.join(',')}`)
    return logicalView(plainStrings(A.view(this.current, heads)))
  }

  /**
   * The map at `path` as plain JSON, maps created concurrently merged key by key (see `readMerged`); as it was at
   * `heads` (a version from `changes()`) when given. `T` is what the caller knows lives at `path` (the document's
   * record types); the read itself checks nothing of it.
   */
  readMerged<T = Record<string, unknown>> (path: readonly string[], heads?: A.Heads): MergedRead<T> | undefined {
    if (heads !== undefined && !A.hasHeads(this.current, heads)) throw new Error(`unknown version ${heads.join(',')}`)
    const bucketed = isBucketed(this.current)
    const raw = rawPath(path, bucketed)
    if (raw === undefined) return this.readCollection(path[0] as keyof typeof BUCKETED_COLLECTIONS, heads) as MergedRead<T> | undefined
    const read = this.readRaw<T>(raw, heads)
    if (!bucketed || path.length > 0 || read === undefined) return read
    // The whole document: flat, as readers see it.
    const flat = flatContent(read.value as Record<string, unknown>) as T
    return { value: flat, conflicts: read.conflicts.map(c => ({ ...c, path: flatConflictPath(c.path) })) }
  }

  /** A whole bucketed collection, merged: its buckets' records as one map (conflict paths without the bucket). */
  private readCollection (collection: keyof typeof BUCKETED_COLLECTIONS, heads?: A.Heads): MergedRead | undefined {
    const read = this.readRaw([BUCKETED_COLLECTIONS[collection]], heads)
    if (read === undefined) return undefined
    return {
      value: mergeBuckets(read.value as Record<string, Record<string, unknown>>),
      conflicts: read.conflicts.map(c => ({ ...c, path: c.path.replace(/^[^.]*\./, '') }))
    }
  }

  private readRaw<T> (path: readonly string[], heads?: A.Heads): MergedRead<T> | undefined {
    if (heads === undefined || sameHeads(heads, this.heads())) {
      // Most records hold no concurrent values: copied from the materialized document, ~100× cheaper than the walk.
      this.concurrentWrites.update(this.changeLog)
      const read = readMaterialized(this.current, path, obj => this.concurrentWrites.isContested(obj))
      if (read !== null) return read as MergedRead<T> | undefined
      return readMerged(this.current, path) as MergedRead<T> | undefined
    }
    return readMerged(this.current, path, heads) as MergedRead<T> | undefined
  }

  /** Whether the map at `path` may hold a key with concurrent values (false only when it surely holds none). */
  mayHoldConcurrentValues (path: readonly string[]): boolean {
    this.concurrentWrites.update(this.changeLog)
    const raw = rawPath(path, isBucketed(this.current))
    // A whole bucketed collection: any of its buckets.
    const maps = raw === undefined
      ? Object.values(materializedMapAt(this.current, [BUCKETED_COLLECTIONS[path[0] as keyof typeof BUCKETED_COLLECTIONS]]) ?? {}) as Array<Record<string, unknown>>
      : [materializedMapAt(this.current, raw)]
    return maps.some(map => {
      const obj = map === undefined ? null : A.getObjectId(map)
      return obj === null || this.concurrentWrites.isContested(obj)
    })
  }

  /** The concurrent values of record `id` itself (two hosts creating it at once), if it has more than one. */
  recordConflict (collection: keyof typeof BUCKETED_COLLECTIONS, id: string): FieldConflict | undefined {
    const parent = parentMap(this.current, collection, id)
    return parent === undefined ? undefined : keyConflict(parent, id, '')
  }

  /**
   * Patches whose paths are every path changed between two versions (read the paths only: between recent versions
   * they are each change's own patches in turn, not one net diff); `before` from an earlier generation reads as a
   * change of the whole document.
   */
  diff (before: A.Heads, after: A.Heads): A.Patch[] {
    if (sameHeads(before, after)) return []
    const recent = this.patchesBetween(before, after)
    if (recent !== undefined) return recent
    if (!A.hasHeads(this.current, before)) return logicalPatches(A.diff(this.current, [], after))
    return logicalPatches(A.diff(this.current, before, after))
  }

  /** The kept transitions' patches from `before` to `after`, if both are among them. */
  private patchesBetween (before: A.Heads, after: A.Heads): A.Patch[] | undefined {
    let end = this.transitions.length - 1
    while (end >= 0 && !sameHeads(this.transitions[end]!.after, after)) end--
    let start = end
    while (start >= 0 && !sameHeads(this.transitions[start]!.before, before)) start--
    if (start < 0) return undefined
    return this.transitions.slice(start, end + 1).flatMap(t => t.patches)
  }

  /**
   * Keeps the patches of a move of `current` from `before` to `after`. Without them (the Automerge call was not
   * given the callback, or made no patch) the kept chain is broken, so it starts again.
   */
  private noteTransition (before: A.Heads, after: A.Heads, patches: A.Patch[] | undefined): void {
    if (patches === undefined || patches.length > KEPT_PATCHES) {
      this.forgetTransitions()
      return
    }
    this.transitions.push({ before, after, patches: logicalPatches(patches) })
    this.keptPatches += patches.length
    while (this.transitions.length > KEPT_TRANSITIONS || this.keptPatches > KEPT_PATCHES) {
      this.keptPatches -= this.transitions.shift()?.patches.length ?? 0
    }
  }

  private forgetTransitions (): void {
    this.transitions = []
    this.keptPatches = 0
  }

  private indexChanges (metas: ReturnType<typeof A.getChangesMetaSince>): void {
    for (const c of metas) {
      const meta = decodeChangeMeta(c.message)
      if (meta !== undefined && !this.actorHosts.has(c.actor)) this.actorHosts.set(c.actor, meta.host)
      this.changeLog.push({ hash: c.hash, actor: c.actor, deps: c.deps, meta })
    }
  }

  /** The changes made after `heads`, as one incremental save (for gossip). */
  saveSince (heads: A.Heads): Uint8Array {
    return A.saveSince(this.current, heads)
  }

  /**
   * The document's size in bytes as stored on disk (snapshot plus change log): free to read, so a metrics scrape
   * costs nothing at any size. It runs ahead of a fresh save by the log's incremental changes until the next
   * compaction (4 MiB or 2,000 records).
   */
  sizeBytes (): number {
    return this.log.storedBytes
  }

  async flush (): Promise<void> {
    await this.log.flush()
  }

  /** Flushes the log and writes a snapshot. */
  async close (): Promise<void> {
    await this.log.close()
  }
}

/** Whether two heads lists name the same version (Automerge returns heads sorted). */
export function sameHeads (a: A.Heads, b: A.Heads): boolean {
  return a.length === b.length && a.every((h, i) => h === b[i])
}

/** Log records applied per step by `withLogApplied`. */
const LOG_RECORDS_PER_BATCH = 100

const AUTOMERGE_META = Symbol.for('_am_meta')

/**
 * Drops Automerge's cache of the last transition's patches (`mostRecentPatch`, which `A.diff` reads) from `doc`. Every
 * object a change creates keeps the metadata object the document had then, cache included, so without this each
 * record holds the patches of the change that made it for as long as it stays unchanged: ~10 MB at 1,000 databases.
 * `diff` here reads this class's own transitions.
 */
function withoutPatchCache (doc: Doc): Doc {
  const meta = (doc as unknown as Record<symbol, { mostRecentPatch?: unknown } | undefined>)[AUTOMERGE_META]
  if (meta !== undefined) delete meta.mostRecentPatch
  return doc
}

/**
 * The snapshot with the log's records applied, saved as one document. Automerge's memory for applying changes grows
 * with how many it applies at once (the changes of 1,000 databases at once: 202 MB of WebAssembly memory; by 100,
 * saved, and the save loaded: 55.5 MB, what loading that document takes anyway; twice the time, 2 s → 4-6 s on the
 * 2-core machine), so the records go in batches, straight into the backend of a scratch document: through
 * `A.loadIncremental` the JavaScript side would build every batch's patches (slower still), and moving the diff
 * cursor after each batch keeps the backend from logging those patches instead (which took 100 MB).
 */
function withLogApplied (snapshot: Uint8Array | undefined, records: Uint8Array[]): Uint8Array {
  const scratch = snapshot === undefined ? A.init() : A.load(snapshot)
  const backend = A.getBackend(scratch)
  for (let i = 0; i < records.length; i += LOG_RECORDS_PER_BATCH) {
    backend.loadIncremental(concatenate(records.slice(i, i + LOG_RECORDS_PER_BATCH)))
    backend.updateDiffCursor()
  }
  const saved = backend.save()
  A.free(scratch)
  return saved
}

function concatenate (chunks: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
  let offset = 0
  for (const chunk of chunks) {
    all.set(chunk, offset)
    offset += chunk.length
  }
  return all
}
