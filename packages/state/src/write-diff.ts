import * as A from '@automerge/automerge'

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type MapProxy = Record<string, unknown>

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Makes the Automerge map `target` equal to `desired` by writing only what differs, field by field, so a concurrent
 * edit of another field survives the merge. Arrays are values: replaced whole when they differ. A key that currently
 * has conflicting values is written even when its winning value already matches, so an update settles the conflict.
 */
export function writeDiff (target: MapProxy, desired: Record<string, unknown>): void {
  for (const key of Object.keys(target)) {
    if (!(key in desired) || desired[key] === undefined) delete target[key]
  }
  for (const [key, value] of Object.entries(desired)) {
    if (value === undefined) continue
    const current = target[key]
    const conflicted = Object.keys(A.getConflicts(target, key) ?? {}).length > 1
    if (isPlainObject(value) && isPlainObject(current) && !conflicted) {
      writeDiff(current, value)
    } else if (conflicted || !deepEqual(current, value)) {
      target[key] = structuredClone(value) as Json
    }
  }
}

/** Equality of plain JSON values (and Automerge proxies of them). */
export function deepEqual (a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a).filter(k => a[k] !== undefined)
    const kb = Object.keys(b).filter(k => b[k] !== undefined)
    return ka.length === kb.length && ka.every(k => deepEqual(a[k], b[k]))
  }
  // Automerge strings inside lists can come back as ImmutableString objects.
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'string') return String(a) === b
  return false
}

export interface FieldConflict {
  /** Path in the anchor's notation, relative to the object searched. */
  path: string
  /** The competing values, winner first. */
  values: unknown[]
  /** The actor that wrote each value, in the same order. */
  actors: string[]
}

/** The concurrent values of one key of an Automerge map, if it has more than one. */
export function keyConflict (parent: MapProxy, key: string, path: string): FieldConflict | undefined {
  const conflicts = A.getConflicts(parent, key)
  if (conflicts === undefined || Object.keys(conflicts).length < 2) return undefined
  // Op ids are `<counter>@<actor>`; the winner is the greatest, as Automerge orders them.
  const entries = Object.entries(conflicts).sort(([x], [y]) => compareOpIds(y, x))
  return { path, values: entries.map(([, v]) => toPlain(v)), actors: entries.map(([id]) => id.split('@')[1] ?? '') }
}

/** Automerge's order of op ids (`<counter>@<actor>`): the greatest value of a key is the one it shows. */
export function compareOpIds (x: string, y: string): number {
  const [cx = '0', ax = ''] = x.split('@')
  const [cy = '0', ay = ''] = y.split('@')
  const dc = Number(cx) - Number(cy)
  return dc !== 0 ? dc : ax.localeCompare(ay)
}

/** A plain JSON copy of a value read from an Automerge document. */
export function toPlain<T = unknown> (value: unknown): T {
  return value === undefined ? undefined as T : JSON.parse(JSON.stringify(value)) as T
}
