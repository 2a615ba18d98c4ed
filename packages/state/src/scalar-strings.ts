import * as A from '@automerge/automerge'
import type { ClusterDoc } from '@pgmesh/model'

/**
 * Strings stored as scalar values instead of collaborative text.
 *
 * Automerge 3 stores a JavaScript string as text: one operation per character, each costing memory on every load.
 * At 1,000 databases 324,000 of the document's 374,000 operations were characters, and a load left 55 MB of
 * WebAssembly memory; with scalar strings (`ImmutableString`) it is 12.7 MB and loads 2-4× faster. Nothing here is
 * ever edited character by character, so nothing is lost.
 *
 * Automerge shows a scalar string as an `ImmutableString` object, both in the materialized document and inside a
 * change callback. Readers here compare and `typeof`-check plain strings, so:
 * - every version of the document this package hands out has its `ImmutableString`s replaced, in place, by their
 *   strings (`plainStrings`, or `plainStringsAfter` from a transition's patches: only what changed);
 * - a change callback sees the document through `stringWriter`, which reads scalar strings as strings and, once
 *   every host reads them, writes strings as scalars.
 *
 * Hosts of an older pgmesh read only text: scalars are written only when every host in the document says it reads
 * them (`HostRecord.document_format`), a function of the document, so hosts agree (a generation's genesis depends
 * on it). Text written before stays text, read the same way, until a generation rewrites the content.
 */

/** The `document_format` of a host that reads scalar strings. */
export const SCALAR_STRINGS_FORMAT = 2

type Container = Record<string | number, unknown>

/**
 * `instanceof`, not `A.isImmutableString`: that asks for an own symbol property, which a list proxy inside a change
 * callback claims to have (it describes every key).
 */
function isScalarString (value: unknown): value is A.ImmutableString {
  return value instanceof A.ImmutableString
}

/** Whether every host in `doc` (a document or plain content) says it reads document format `format`. */
export function everyHostReads (doc: Partial<ClusterDoc> | Record<string, unknown>, format: number): boolean {
  const hosts = Object.values((doc as Partial<ClusterDoc>).hosts ?? {})
  return hosts.length > 0 && hosts.every(h => (h.document_format ?? 1) >= format)
}

/** Whether changes to `doc` write strings as scalars: every host in it reads them. */
export function writesScalarStrings (doc: Partial<ClusterDoc> | Record<string, unknown>): boolean {
  return everyHostReads(doc, SCALAR_STRINGS_FORMAT)
}

/**
 * Whether `doc` was created by a pgmesh that wrote strings as text and has not been rewritten since, while every host
 * now reads scalars: the compactor then starts a generation, which rewrites the content as scalars. The cluster's id
 * tells: it is written once, at creation (as a scalar since this format), and again only by a generation.
 */
export function holdsTextToRewrite (doc: A.Doc<unknown>): boolean {
  return writesScalarStrings(doc as Record<string, unknown>) && clusterIdStoredAs(doc) === 'text'
}

/**
 * Whether `doc` may hold scalar strings, which a host of an older pgmesh cannot read: it writes them, or it was
 * created (or rewritten by a generation) on this format.
 */
export function mayHoldScalarStrings (doc: A.Doc<unknown>): boolean {
  return writesScalarStrings(doc as Record<string, unknown>) || clusterIdStoredAs(doc) === 'str'
}

function clusterIdStoredAs (doc: A.Doc<unknown>): string | undefined {
  const backend = A.getBackend(doc)
  const cluster = backend.getWithType('_root', 'cluster')
  if (cluster?.[0] !== 'map') return undefined
  return backend.getWithType(cluster[1] as string, 'id')?.[0]
}

/** Replaces every `ImmutableString` under `value` (a materialized document or part of one) by its string, in place. */
export function plainStrings<T> (value: T): T {
  convertWithin(value)
  return value
}

/**
 * After a transition to `doc` whose patches are `patches`: replaces the `ImmutableString`s those patches put by their
 * strings, in place. The rest of the document came from the previous version, already converted.
 *
 * A patch's path holds when the patch is applied; a later patch of the same transition may shift a list index on it
 * (two inserts into one list, the second before the first). So a string put at a path through a list converts that
 * whole list (the document's lists are short); map keys do not move.
 */
export function plainStringsAfter<T> (doc: T, patches: readonly A.Patch[]): T {
  const lists = new Set<string>()
  for (const patch of patches) {
    const putsString = patch.action === 'put' ? isScalarString(patch.value) : patch.action === 'insert' && patch.values.some(v => isScalarString(v))
    if (!putsString) continue
    const listAt = patch.path.findIndex(k => typeof k === 'number')
    if (listAt >= 0) {
      const prefix = patch.path.slice(0, listAt)
      const key = JSON.stringify(prefix)
      if (lists.has(key)) continue
      lists.add(key)
      convertWithin(containerAt(doc, prefix))
      continue
    }
    const parent = containerAt(doc, patch.path.slice(0, -1))
    const key = patch.path[patch.path.length - 1] as string
    if (parent !== undefined && isScalarString(parent[key])) parent[key] = String(parent[key])
  }
  return doc
}

function containerAt (doc: unknown, path: ReadonlyArray<string | number>): Container | undefined {
  let value: unknown = doc
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined
    value = (value as Container)[key]
  }
  return typeof value === 'object' && value !== null ? value as Container : undefined
}

function convertWithin (value: unknown): void {
  if (typeof value !== 'object' || value === null || isScalarString(value) || value instanceof A.Counter || value instanceof Date || value instanceof Uint8Array) return
  const container = value as Container
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      if (isScalarString(item)) container[i] = String(item)
      else convertWithin(item)
    }
    return
  }
  for (const key of Object.keys(value)) {
    const item = container[key]
    if (isScalarString(item)) container[key] = String(item)
    else convertWithin(item)
  }
}

/** A value to write, with every string in it made a scalar (plain objects and arrays copied, anything else as is). */
function toScalars (value: unknown): unknown {
  if (typeof value === 'string') return new A.ImmutableString(value)
  if (typeof value !== 'object' || value === null || isDocObject(value)) return value
  if (Array.isArray(value)) return value.map(toScalars)
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return value // Date, Counter, Int, ImmutableString, bytes
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toScalars(v)]))
}

/** A map or list of the document (a materialized object or a change callback's proxy), not a value to write. */
function isDocObject (value: object): boolean {
  return A.getObjectId(value) != null
}

const UNWRAP = Symbol('pgmesh.unwrap')
/** List methods that add values: their arguments are converted. */
const LIST_WRITES = new Set(['push', 'unshift', 'insertAt', 'splice', 'fill'])
/** List methods that change the list in place: called on the list itself, results read as strings. */
const LIST_IN_PLACE = new Set(['pop', 'shift', 'deleteAt'])

/**
 * The root proxy of a change callback seen with strings: scalar strings read as strings (maps and lists read through
 * the same view), and, when `scalar`, strings written as scalars. Automerge's own functions (`getConflicts`,
 * `getObjectId`, `getBackend`) work on the view: symbol-keyed reads pass through.
 */
export function stringWriter<T extends object> (root: T, scalar: boolean): T {
  const views = new WeakMap<object, object>()
  const write = scalar ? toScalars : (v: unknown) => v
  const unwrap = (v: unknown): unknown => (typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[UNWRAP] !== undefined) ? (v as Record<symbol, unknown>)[UNWRAP] : v
  const read = (v: unknown): unknown => {
    if (isScalarString(v)) return String(v)
    if (typeof v === 'object' && v !== null && isDocObject(v) && !(v instanceof A.Counter)) return view(v)
    return v
  }
  const view = (am: object): object => {
    let existing = views.get(am)
    if (existing !== undefined) return existing
    const isList = Array.isArray(am)
    const list = am as unknown[]
    const items = (): unknown[] => Array.from({ length: list.length }, (_, i) => read(list[i]))
    // The proxy's own target is a stand-in: JavaScript checks a proxy's answers against its target's own properties,
    // and asking an Automerge list proxy for a property that is not an index throws.
    existing = new Proxy(isList ? [] : {}, {
      get (_, key) {
        if (key === UNWRAP) return am
        if (typeof key === 'symbol') {
          if (isList && key === Symbol.iterator) return () => items()[Symbol.iterator]()
          return Reflect.get(am, key)
        }
        const value = Reflect.get(am, key)
        if (isList && typeof value === 'function') {
          const method = value as (...args: unknown[]) => unknown
          if (LIST_WRITES.has(key)) {
            // splice(start, deleteCount, ...items) and insertAt(index, ...items): only the items are values.
            const skip = key === 'splice' ? 2 : key === 'insertAt' ? 1 : 0
            return (...args: unknown[]) => read(method.apply(am, args.map((a, i) => i < skip ? a : write(unwrap(a)))))
          }
          if (LIST_IN_PLACE.has(key)) return (...args: unknown[]) => read(method.apply(am, args))
          // Reading methods (map, find, includes, …) run over the list's values as strings.
          return (...args: unknown[]) => (items() as unknown as Record<string, (...a: unknown[]) => unknown>)[key]?.(...args)
        }
        return read(value)
      },
      set (_, key, value) {
        return Reflect.set(am, key, typeof key === 'symbol' ? value : write(unwrap(value)))
      },
      has (_, key) {
        return Reflect.has(am, key)
      },
      deleteProperty (_, key) {
        return Reflect.deleteProperty(am, key)
      },
      ownKeys () {
        return isList ? ['length', ...Array.from({ length: list.length }, (_, i) => String(i))] : Reflect.ownKeys(am)
      },
      getOwnPropertyDescriptor (_, key) {
        if (typeof key === 'symbol') return undefined
        if (isList && key === 'length') return { value: list.length, writable: true, enumerable: false, configurable: false }
        const value: unknown = Reflect.get(am, key)
        if (value === undefined || (isList && !/^[0-9]+$/.test(key))) return undefined
        return { value: read(value), writable: true, enumerable: true, configurable: true }
      }
    })
    views.set(am, existing)
    return existing
  }
  return view(root) as T
}
