/** Concurrent changes decoded in any case; beyond it, only while they are at most a quarter of the history. */
const MIN_DECODE_BUDGET = 256

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
 * wrote one after the other in a concurrent stretch counts too; a history out of causal order, or one where more
 * than a quarter of the changes (and over 256) are concurrent, contests everything (until the next generation).
 */
export class ConcurrentWrites {
  private readonly index = new Map<string, number>()
  private readonly hashes: string[] = []
  /** Heads of the changes seen so far (indices in causal order). */
  private heads = new Set<number>()
  /** Per change: still ordered with every change seen so far. Once concurrent, always (history only grows). */
  private readonly ordered: boolean[] = []
  private concurrentChanges = 0
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
   * `ClusterState.changes()` gives it; it only grows until `reset`).
   *
   * In causal order, change i is ordered with every other one when it is the only head of the changes up to it and
   * the only root of the changes from it on: no later change has all its parents before i. New changes leave the
   * first condition of the earlier ones as it was; the second fails exactly for the earlier changes after the
   * latest parent of some new change (its fork point). So the cost is the new changes plus, for a change made beside
   * others, the stretch since its fork point; a change made on top of every other one (a local change, or a peer's
   * made after it got everything here) has its fork point at the last change, and costs a set update.
   */
  update (changes: readonly ChangeLink[]): void {
    const start = this.hashes.length
    if (changes.length === start || this.unknowable) return
    const latestParents: number[] = []
    for (let i = start; i < changes.length; i++) {
      const change = changes[i] as ChangeLink
      let latestParent = -1
      for (const dep of change.deps) {
        const d = this.index.get(dep)
        if (d === undefined) {
          this.unknowable = true
          return
        }
        latestParent = Math.max(latestParent, d)
        this.heads.delete(d)
      }
      this.heads.add(i)
      this.index.set(change.hash, i)
      this.hashes.push(change.hash)
      this.ordered.push(this.heads.size === 1)
      latestParents.push(latestParent)
    }
    // Backwards through the new changes: the earliest fork point of the changes after each.
    let forkPoint = Number.POSITIVE_INFINITY
    for (let i = changes.length - 1; i >= start; i--) {
      if (forkPoint < i) this.ordered[i] = false
      forkPoint = Math.min(forkPoint, latestParents[i - start] as number)
    }
    const newlyConcurrent: number[] = []
    for (let i = Math.max(forkPoint + 1, 0); i < start; i++) {
      if (this.ordered[i] === true) {
        this.ordered[i] = false
        newlyConcurrent.push(i)
      }
    }
    for (let i = start; i < changes.length; i++) if (this.ordered[i] === false) newlyConcurrent.push(i)
    this.concurrentChanges += newlyConcurrent.length
    // Decoding a change costs more than walking a record (Automerge rebuilds it from its operations: ~4 ms at 5,000
    // databases, against ~1.2 ms per record), so a history this concurrent is better read the slow way throughout.
    if (this.concurrentChanges > Math.max(MIN_DECODE_BUDGET, this.hashes.length / 4)) {
      this.unknowable = true
      return
    }
    for (const i of newlyConcurrent) this.recordWrites(i)
  }

  /** Forgets everything (a new document generation starts its history again). */
  reset (): void {
    this.index.clear()
    this.hashes.length = 0
    this.heads = new Set()
    this.ordered.length = 0
    this.concurrentChanges = 0
    this.writers.clear()
    this.contested.clear()
    this.unknowable = false
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
