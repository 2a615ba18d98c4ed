import * as A from '@automerge/automerge'
import { compareOpIds, type FieldConflict } from './write-diff.js'

type Backend = ReturnType<typeof A.getBackend>
type Value = ReturnType<Backend['getAll']>[number]
type FullValue = NonNullable<ReturnType<Backend['getWithType']>>
type MapProxy = Record<string, unknown>

export interface MergedRead<T = Record<string, unknown>> {
  /** Plain JSON: every map that hosts created concurrently at one key merged key by key. */
  value: T
  /** Leaf keys (scalars, strings, lists, or a map against a non-map) that got different concurrent values. */
  conflicts: FieldConflict[]
}

/**
 * Reads the map at `path` (following the winning value at each step) as plain JSON in which concurrently created
 * maps are one map. Automerge keeps every value written concurrently at one key but shows only the greatest; for
 * two maps that is one whole map winning over the other, and the loser's keys vanish from a plain read. Here their
 * keys are merged recursively, and only a key that got different non-map values is a conflict, its greatest value
 * shown (as Automerge shows it). Lists are values: never merged element by element.
 *
 * `doc` is a document, or the root proxy inside a change callback; `heads` reads an earlier version. Undefined when
 * the path does not lead to a map.
 */
export function readMerged (doc: A.Doc<unknown>, path: readonly string[], heads?: A.Heads): MergedRead | undefined {
  const reader = new MergedReader(A.getBackend(doc), heads)
  let obj = '_root'
  for (const key of path) {
    const next = reader.backend.getWithType(obj, key, heads)
    if (next?.[0] !== 'map') return undefined
    obj = next[1]
  }
  const conflicts: FieldConflict[] = []
  return { value: reader.mergeMaps([obj], '', conflicts), conflicts }
}

/**
 * `readMerged`'s result read from the document's materialized value instead of the Automerge backend, for a
 * document's current version: `null` when an object under `path` is `contested` (may hold a key with concurrent
 * values, which only the backend shows), so the caller reads it with `readMerged`. Without concurrent values both
 * reads are the winning values, converted alike; this one costs a copy instead of a WebAssembly call per key.
 */
export function readMaterialized (doc: A.Doc<unknown>, path: readonly string[], contested: (obj: string) => boolean): MergedRead | undefined | null {
  const value = materializedMapAt(doc, path)
  if (value === undefined) return undefined
  const plain = plainOf(value, contested)
  return plain === CONTESTED ? null : { value: plain as Record<string, unknown>, conflicts: [] }
}

/** The map at `path` in the document's materialized value (the winning value at each step); undefined if none. */
export function materializedMapAt (doc: A.Doc<unknown>, path: readonly string[]): MapProxy | undefined {
  let value: unknown = doc
  for (const key of path) value = isMap(value) ? value[key] : undefined
  return isMap(value) ? value : undefined
}

const CONTESTED = Symbol('contested')

function isMap (value: unknown): value is MapProxy {
  return Object.prototype.toString.call(value) === '[object Object]' && !A.isImmutableString(value) && !A.isCounter(value) && A.getObjectId(value) !== null
}

function plainOf (value: unknown, contested: (obj: string) => boolean): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (value instanceof Date) return value.toISOString()
  if (value instanceof Uint8Array) return value.slice()
  if (A.isImmutableString(value)) return value.toString()
  if (A.isCounter(value)) return value.value
  const obj = A.getObjectId(value)
  if (obj === null) return CONTESTED // nothing Automerge materializes: let the backend read it
  if (contested(obj)) return CONTESTED
  if (Array.isArray(value)) {
    const items: unknown[] = []
    for (const item of value) {
      const plain = plainOf(item, contested)
      if (plain === CONTESTED) return CONTESTED
      items.push(plain)
    }
    return items
  }
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value)) {
    const plain = plainOf((value as MapProxy)[key], contested)
    if (plain === CONTESTED) return CONTESTED
    out[key] = plain
  }
  return out
}

/**
 * Inside a change callback: the map at `parent[key]` as one writable map. Created when absent; when hosts created
 * it concurrently, replaced by one new map holding their merged contents, so the Automerge-level conflict is gone
 * and later writes land in the map every host reads. `doc` is the change callback's root proxy.
 */
export function materializeMap<P extends object, K extends keyof P & string> (doc: unknown, parent: P, key: K): NonNullable<P[K]> {
  const backend = A.getBackend(doc as A.Doc<unknown>)
  const obj = A.getObjectId(parent)
  if (obj === null) throw new Error('materializeMap needs a document proxy')
  const values = backend.getAll(obj, key)
  const maps = values.filter(v => v[0] === 'map').map(v => v[1] as string)
  const target = parent as MapProxy
  if (values.length !== 1 || maps.length !== 1) {
    target[key] = maps.length === 0 ? {} : new MergedReader(backend, undefined).mergeMaps(maps, '', [])
  }
  return target[key] as NonNullable<P[K]>
}

class MergedReader {
  constructor (readonly backend: Backend, private readonly heads: A.Heads | undefined) {}

  /** The maps `objs` (concurrent values of one key, or one map) merged into one plain object. */
  mergeMaps (objs: readonly string[], path: string, conflicts: FieldConflict[]): Record<string, unknown> {
    const keys = objs.length === 1 ? this.backend.keys(objs[0] as string, this.heads) : [...new Set(objs.flatMap(o => this.backend.keys(o, this.heads)))].sort()
    const out: Record<string, unknown> = {}
    for (const key of keys) {
      const keyPath = path === '' ? key : `${path}.${key}`
      const values = objs.flatMap(o => this.backend.getAll(o, key, this.heads))
      if (values.length === 0) continue
      if (values.length === 1) {
        out[key] = this.plain(values[0] as Value, keyPath, conflicts)
        continue
      }
      if (values.every(v => v[0] === 'map')) {
        out[key] = this.mergeMaps(values.map(v => v[1] as string), keyPath, conflicts)
        continue
      }
      // Greatest op id first: the value Automerge shows at this key.
      values.sort((x, y) => compareOpIds(opId(y), opId(x)))
      const plain = values.map((v, i) => this.plain(v, keyPath, i === 0 ? conflicts : []))
      out[key] = plain[0]
      const distinct = new Set(plain.map(v => JSON.stringify(v)))
      if (distinct.size > 1) conflicts.push({ path: keyPath, values: plain, actors: values.map(v => opId(v).split('@')[1] ?? '') })
    }
    return out
  }

  private plain (value: Value | FullValue, path: string, conflicts: FieldConflict[]): unknown {
    switch (value[0]) {
      case 'map': return this.mergeMaps([value[1]], path, conflicts)
      case 'list': {
        const length = this.backend.length(value[1], this.heads)
        const items: unknown[] = []
        for (let i = 0; i < length; i++) {
          const item = this.backend.getWithType(value[1], i, this.heads)
          items.push(item === null ? null : this.plain(item, `${path}.${i}`, []))
        }
        return items
      }
      case 'text': return this.backend.text(value[1], this.heads)
      case 'timestamp': return value[1].toISOString()
      case 'table': return {}
      default: return value[1]
    }
  }
}

/** Objects' op id is their object id; scalars carry it third. */
function opId (v: Value): string {
  return v[0] === 'map' || v[0] === 'list' || v[0] === 'text' || v[0] === 'table' ? v[1] : v[2]
}
