/** What the index needs of a change: its hash and the hashes it depends on. */
export interface ChangeLink {
  hash: string
  deps: readonly string[]
}

/** What the index needs of an operation (Automerge's decoded op). */
export interface WrittenOp {
  obj: string
  key?: string
  elemId?: string
  insert?: boolean
}

/**
 * Which objects of the document may hold a key with concurrent values, found from the change history instead of by
 * asking Automerge key by key.
 *
 * A key holds two values only when two changes that do not know of each other (concurrent changes) both wrote it:
 * a change that knew of the other would have overwritten its value. So only changes concurrent with some other change
 * are looked into, and an object is contested when one of its keys was written by two of them. The concurrent
 * changes are those that are not ordered with every other change: a history made on one host, or by hosts taking
 * turns, has none, and nothing is decoded. A value inside a map that lost to a concurrently created one is reached
 * through that map's key, which is contested itself.
 *
 * Conservative: a contested object may have had its conflict settled by a later write, and a key that two changes
 * wrote one after the other in a concurrent stretch counts too; a history out of causal order contests everything.
 */
export class ConcurrentWrites {
  private readonly index = new Map<string, number>()
  private readonly deps: number[][] = []
  private readonly hashes: string[] = []
  /** Heads of the changes seen so far (indices). */
  private heads = new Set<number>()
  /** Changes found concurrent with another; their writes are in `writers`. */
  private readonly concurrent = new Set<number>()
  /** `obj\0key` → the first concurrent change that wrote it. */
  private readonly writers = new Map<string, number>()
  private readonly contested = new Set<string>()
  /** A change came before one it depends on, or could not be decoded: every object counts as contested. */
  private unknowable = false

  /** `opsOf` decodes a change's operations (undefined when the document lacks it). */
  constructor (private readonly opsOf: (hash: string) => readonly WrittenOp[] | undefined) {}

  /** Whether the object `obj` may hold a key with concurrent values, as of the changes given to `update`. */
  isContested (obj: string): boolean {
    return this.unknowable || this.contested.has(obj)
  }

  /**
   * Takes in the changes after the ones seen so far (`changes` is the whole history in causal order, as
   * `ClusterState.changes()` gives it; it only grows until `reset`). A change made on top of every change seen so far
   * (a local change, or a peer's made after it got everything here) costs a set update.
   */
  update (changes: readonly ChangeLink[]): void {
    const start = this.hashes.length
    if (changes.length === start || this.unknowable) return
    let linear = true
    for (let i = start; i < changes.length; i++) {
      const change = changes[i] as ChangeLink
      const deps: number[] = []
      for (const dep of change.deps) {
        const d = this.index.get(dep)
        if (d === undefined) {
          this.unknowable = true
          return
        }
        deps.push(d)
      }
      if (deps.length !== this.heads.size || !deps.every(d => this.heads.has(d))) linear = false
      for (const d of deps) this.heads.delete(d)
      this.heads.add(i)
      this.index.set(change.hash, i)
      this.hashes.push(change.hash)
      this.deps.push(deps)
    }
    if (!linear) this.findConcurrent()
  }

  /** Forgets everything (a new document generation starts its history again). */
  reset (): void {
    this.index.clear()
    this.deps.length = 0
    this.hashes.length = 0
    this.heads = new Set()
    this.concurrent.clear()
    this.writers.clear()
    this.contested.clear()
    this.unknowable = false
  }

  /**
   * A change is ordered with every other one when, in causal order, it is the only head of the changes up to it and
   * the only root of the changes from it on. Every other change is concurrent with some change.
   */
  private findConcurrent (): void {
    const n = this.hashes.length
    const ordered = new Uint8Array(n)
    const isHead = new Uint8Array(n)
    let heads = 0
    for (let i = 0; i < n; i++) {
      heads++
      isHead[i] = 1
      for (const d of this.deps[i] as number[]) {
        if (isHead[d] === 1) { isHead[d] = 0; heads-- }
      }
      if (heads === 1) ordered[i] = 1
    }
    const children: number[][] = Array.from({ length: n }, () => [])
    for (let i = 0; i < n; i++) for (const d of this.deps[i] as number[]) children[d]?.push(i)
    const parentsAfter = new Int32Array(n)
    let roots = 0
    for (let i = n - 1; i >= 0; i--) {
      roots++
      for (const child of children[i] as number[]) {
        if (parentsAfter[child] === 0) roots--
        parentsAfter[child] = (parentsAfter[child] ?? 0) + 1
      }
      if (roots !== 1) ordered[i] = 0
    }
    for (let i = 0; i < n; i++) {
      if (ordered[i] === 1 || this.concurrent.has(i)) continue
      this.concurrent.add(i)
      this.recordWrites(i)
    }
  }

  private recordWrites (change: number): void {
    const ops = this.opsOf(this.hashes[change] as string)
    if (ops === undefined) {
      this.unknowable = true
      return
    }
    for (const op of ops) {
      // An inserted list element or character is new: nothing else wrote it.
      if (op.insert === true) continue
      const slot = `${op.obj}\0${op.key ?? op.elemId ?? ''}`
      const writer = this.writers.get(slot)
      if (writer === undefined) this.writers.set(slot, change)
      else if (writer !== change) this.contested.add(op.obj)
    }
  }
}
