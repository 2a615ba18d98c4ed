import type * as A from '@automerge/automerge'
import { type ClusterState, sameHeads } from '@pgmesh/state'

/**
 * Values derived from one database's part of the cluster document (decoded spec, validation, redacted view,
 * conflicts), rebuilt only after a change touched that part. Reads vastly outnumber writes, and decoding and
 * validating a spec costs far more than serving it, so a read after no change costs a map lookup.
 *
 * Invalidation is lazy: the first read after the document moved asks Automerge which paths changed between the
 * heads this cache was built at and the current ones. A host joining or leaving invalidates the databases whose spec
 * names it (validation depends on the known host ids: `hostsOf` says which an entry's spec names); a change inside a
 * host's record (a restart rewrites it) invalidates none. At 10,000 databases rebuilding every entry took ~1.3 s, so
 * each join blocked a member that long. A change to a task invalidates the databases whose current task it is. A change
 * inside a map that lost to a concurrently created one makes no patch (Automerge diffs what it shows), yet the merged
 * read shows it: so a change whose metadata names a database invalidates that database too.
 */
export class DatabaseCache<T> {
  private heads: A.Heads | undefined
  private readonly entries = new Map<string, T | null>()
  /** The ids of the built entries by their current task, so a task's change finds its database without a scan. */
  private readonly byTask = new Map<string, Set<string>>()
  /** The ids of the built entries by the host ids their specs name. */
  private readonly byHost = new Map<string, Set<string>>()
  /** The document's host ids when the entries were last checked against them. */
  private hostIds: ReadonlySet<string> = new Set()
  /** The database ids in the document, sorted; recomputed after any change. */
  private ids: string[] | undefined
  private changes = 0
  /** How many of the state's change records the entries have seen. */
  private seenChanges = 0

  constructor (
    private readonly state: ClusterState,
    private readonly build: (id: string) => T | undefined,
    private readonly taskOf: (entry: T) => string,
    private readonly hostsOf: (entry: T) => Iterable<string> = () => []
  ) {}

  get (id: string): T | undefined {
    this.refresh()
    return this.entry(id)
  }

  /** Moves each time the document did (any change, not only one that touched an entry). */
  version (): number {
    this.refresh()
    return this.changes
  }

  /** Every database's entry, in id order. */
  all (): T[] {
    this.refresh()
    this.ids ??= Object.keys(this.state.doc.databases ?? {}).sort()
    return this.ids.map(id => this.entry(id)).filter((e): e is T => e !== undefined)
  }

  private entry (id: string): T | undefined {
    let entry = this.entries.get(id)
    if (entry === undefined) {
      entry = this.build(id) ?? null
      this.entries.set(id, entry)
      if (entry !== null) {
        index(this.byTask, this.taskOf(entry), id)
        for (const host of this.hostsOf(entry)) index(this.byHost, host, id)
      }
    }
    return entry ?? undefined
  }

  private drop (id: string): void {
    const entry = this.entries.get(id)
    if (entry === undefined) return
    this.entries.delete(id)
    if (entry === null) return
    unindex(this.byTask, this.taskOf(entry), id)
    for (const host of this.hostsOf(entry)) unindex(this.byHost, host, id)
  }

  private dropAll (): void {
    this.entries.clear()
    this.byTask.clear()
    this.byHost.clear()
    this.hostIds = this.currentHostIds()
  }

  private refresh (): void {
    const heads = this.state.heads()
    if (this.heads !== undefined && sameHeads(this.heads, heads)) return
    if (this.heads === undefined) this.dropAll()
    else this.invalidate(this.state.diff(this.heads, heads))
    const records = this.state.changes()
    for (let i = this.seenChanges; i < records.length; i++) {
      const entity = records[i]?.meta?.entity
      if (entity !== undefined) this.drop(entity)
    }
    this.seenChanges = records.length
    this.heads = heads
    this.ids = undefined
    this.changes++
  }

  private invalidate (patches: A.Patch[]): void {
    const tasks = new Set<string>()
    let hostsMoved = false
    for (const { path } of patches) {
      const [root, key] = path
      if (root === 'databases' && key !== undefined) {
        this.drop(String(key))
      } else if (root === 'tasks' && key !== undefined) {
        tasks.add(String(key))
      } else if (root === 'hosts') {
        hostsMoved = true
      } else if (root === 'databases' || root === 'tasks' || root === undefined) {
        this.dropAll()
        return
      }
    }
    for (const task of tasks) {
      for (const id of [...this.byTask.get(task) ?? []]) this.drop(id)
    }
    if (hostsMoved) {
      const now = this.currentHostIds()
      for (const host of new Set([...now, ...this.hostIds])) {
        if (now.has(host) !== this.hostIds.has(host)) for (const id of [...this.byHost.get(host) ?? []]) this.drop(id)
      }
      this.hostIds = now
    }
  }

  private currentHostIds (): ReadonlySet<string> {
    return new Set(Object.keys(this.state.doc.hosts ?? {}))
  }
}

function index (map: Map<string, Set<string>>, key: string, id: string): void {
  const ids = map.get(key)
  if (ids === undefined) map.set(key, new Set([id]))
  else ids.add(id)
}

function unindex (map: Map<string, Set<string>>, key: string, id: string): void {
  const ids = map.get(key)
  ids?.delete(id)
  if (ids?.size === 0) map.delete(key)
}
