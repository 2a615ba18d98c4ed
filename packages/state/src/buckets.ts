import * as A from '@automerge/automerge'
import type { ClusterDoc } from '@pgmesh/model'
import { everyHostReads } from './scalar-strings.js'

/**
 * Databases and tasks kept in buckets: `database_buckets[b][id]` and `task_buckets[b][id]` in the Automerge document,
 * `b` a hash of the id, instead of one map each.
 *
 * Why: Automerge-JS pays for a change with the size of every map it writes into. It copies the map's materialized
 * object (every key) and indexes every child of the map to build the change's patch path. One create writes a
 * database and its task: in process 3.9 ms at 1,000 databases, 31 ms at 10,000 (a POST's p99 98 ms there). Into
 * 64 buckets it is 1.2-1.5 ms at both sizes (`npm run bench:writes`, and the README's account).
 *
 * Readers do not see buckets. Every document this package hands out shows `databases` and `tasks` as maps of
 * id → record (`logicalView`), every change callback writes them the same way (`bucketWriter`), and the paths of
 * patches and merged reads are those of the flat maps (`logicalPatches`, `rawPath`).
 *
 * Which layout a document has is a fact of the document: it has buckets or it has not, never records in both. Buckets
 * are made only where one computation writes the whole content: the cluster's genesis (`ClusterState.initialize`) and
 * a generation's genesis (every host computes the same bytes). All 64 of a collection are made at once, so no two hosts
 * ever create the same bucket concurrently (a map created twice at one key shows only one of them). A generation
 * writes buckets once every host in the document reads them (`HostRecord.document_format` 3); a flat document whose
 * hosts all do is rewritten by the compactor's next generation, whatever its history's length.
 */

/** The `document_format` of a host that reads bucketed collections (and scalar strings). */
export const BUCKETED_FORMAT = 3
/** The newest document format this version reads: what it writes into its host record and sends when joining. */
export const DOCUMENT_FORMAT = BUCKETED_FORMAT
/** Buckets per collection: 10,000 records are ~160 per bucket; 64 keys are cheap to copy in the bucket map itself. */
export const BUCKET_COUNT = 64

/**
 * Throws when `doc` (a document or its logical view) is laid out in a format newer than this version reads: a host
 * downgraded past it would read no databases there, and its reconciler would remove every instance it runs.
 */
export function checkReadable (doc: Partial<ClusterDoc>, what: string): void {
  const format = doc.cluster?.document_format
  if (format !== undefined && format > DOCUMENT_FORMAT) {
    throw new Error(`${what} is laid out in cluster document format ${format}, and this pgmesh reads formats up to ${DOCUMENT_FORMAT}: ` +
      'run the pgmesh version the rest of the cluster runs (a host is not downgraded past its cluster\'s document format)')
  }
}

/** The flat collections that live in buckets, and the document key of their buckets. */
export const BUCKETED_COLLECTIONS = { databases: 'database_buckets', tasks: 'task_buckets' } as const
type Collection = keyof typeof BUCKETED_COLLECTIONS
const BUCKET_KEYS = new Set<string>(Object.values(BUCKETED_COLLECTIONS))

type MapProxy = Record<string, unknown>

/** The bucket of `id`: FNV-1a of its UTF-16 code units, as two hex digits (the same on every host and version). */
export function bucketOf (id: string): string {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return (hash % BUCKET_COUNT).toString(16).padStart(2, '0')
}

function isCollection (key: unknown): key is Collection {
  return key === 'databases' || key === 'tasks'
}

/** Whether `doc` (a materialized document, plain content or a change callback's root) keeps its records in buckets. */
export function isBucketed (doc: unknown): boolean {
  return typeof doc === 'object' && doc !== null && (doc as MapProxy)[BUCKETED_COLLECTIONS.databases] !== undefined
}

/** Whether a generation's genesis from `content` (flat, as readers see it) writes buckets: every host reads them. */
export function writesBuckets (content: Partial<ClusterDoc> | MapProxy): boolean {
  return everyHostReads(content, BUCKETED_FORMAT)
}

/** A flat document whose hosts all read buckets: the compactor starts a generation to rewrite it. */
export function holdsFlatToRewrite (doc: A.Doc<unknown>): boolean {
  return !isBucketed(doc) && (doc as Partial<ClusterDoc>).cluster !== undefined && writesBuckets(doc as Partial<ClusterDoc>)
}

/**
 * Plain content (flat) laid out in buckets, every bucket made (empty ones too), and the cluster record saying the
 * format that needs: what a genesis writes, the cluster's first change and a generation's alike.
 */
export function bucketedContent (content: MapProxy): MapProxy {
  const out: MapProxy = { ...content }
  if (typeof content.cluster === 'object' && content.cluster !== null) out.cluster = { ...content.cluster, document_format: BUCKETED_FORMAT }
  for (const [collection, key] of Object.entries(BUCKETED_COLLECTIONS)) {
    const buckets: Record<string, MapProxy> = Object.fromEntries(Array.from({ length: BUCKET_COUNT }, (_, i) => [i.toString(16).padStart(2, '0'), {}]))
    for (const [id, record] of Object.entries((content[collection] ?? {}) as MapProxy)) (buckets[bucketOf(id)] as MapProxy)[id] = record
    out[key] = buckets
    delete out[collection]
  }
  return out
}

/** Plain content (a merged read of a whole document) as readers see it: bucketed collections flattened. */
export function flatContent (content: MapProxy): MapProxy {
  if (!isBucketed(content)) return content
  const out: MapProxy = { ...content }
  for (const [collection, key] of Object.entries(BUCKETED_COLLECTIONS)) {
    out[collection] = mergeBuckets((content[key] ?? {}) as Record<string, MapProxy>)
    delete out[key]
  }
  return out
}

/**
 * A conflict's path in a merged read of the whole document (`database_buckets.<b>.<id>…`) as readers name it
 * (`databases.<id>…`); other paths as they are.
 */
export function flatConflictPath (path: string): string {
  return path.replace(/^(database|task)_buckets\.[^.]*/, (_, kind: string) => `${kind}s`)
}

/** Plain buckets as one map, keys in order (as a merged read of one map gives them). */
export function mergeBuckets (buckets: Record<string, MapProxy>): MapProxy {
  const all: MapProxy = Object.assign({}, ...Object.values(buckets))
  return Object.fromEntries(Object.keys(all).sort().map(k => [k, all[k]]))
}

/**
 * A document path as readers name it (`['databases', id, ...]`) in the document's own layout. A whole collection
 * (`['databases']`) has no single map in a bucketed document: undefined.
 */
export function rawPath (path: readonly string[], bucketed: boolean): string[] | undefined {
  const [root, id, ...rest] = path
  if (!bucketed || !isCollection(root)) return [...path]
  if (id === undefined) return undefined
  return [BUCKETED_COLLECTIONS[root], bucketOf(id), id, ...rest]
}

/**
 * Patches of a bucketed document with the paths readers know: `['database_buckets', b, id, ...]` becomes
 * `['databases', id, ...]`; a patch of a bucket or of the buckets' map (a genesis) reads as one of the whole
 * collection. Patches of a flat document are returned as they are.
 */
export function logicalPatches (patches: A.Patch[]): A.Patch[] {
  if (!patches.some(p => BUCKET_KEYS.has(p.path[0] as string))) return patches
  return patches.map(p => {
    const key = p.path[0] as string
    if (!BUCKET_KEYS.has(key)) return p
    const collection = key === BUCKETED_COLLECTIONS.databases ? 'databases' : 'tasks'
    return { ...p, path: p.path.length <= 2 ? [collection] : [collection, ...p.path.slice(2)] } as A.Patch
  })
}

const views = new WeakMap<object, unknown>()

/**
 * `doc` (a materialized document, or a plain one) as readers see it: a bucketed document's collections shown as flat
 * maps (read-only views over its buckets; a record is found through its id's bucket, listing walks every bucket once
 * per version), the rest as it is. A flat document is returned itself. Automerge's functions need the document itself,
 * not this view.
 */
export function logicalView<T> (doc: T): T {
  if (!isBucketed(doc)) return doc
  const existing = views.get(doc as object)
  if (existing !== undefined) return existing as T
  const raw = doc as MapProxy
  const view: MapProxy = {}
  for (const key of Object.keys(raw)) {
    if (!BUCKET_KEYS.has(key)) view[key] = raw[key]
  }
  for (const [collection, key] of Object.entries(BUCKETED_COLLECTIONS)) view[collection] = readOnlyCollection(raw[key] as Record<string, MapProxy> | undefined)
  Object.freeze(view)
  views.set(doc as object, view)
  return view as T
}

/**
 * A flat, read-only map of id → record over `buckets`, behaving as a plain object would (own keys sorted, as Automerge
 * shows a map's). A record is found through its id's bucket; the first listing of a version copies the buckets into
 * one object once, so listing costs what it did on a flat document (a trap per key finding each through its bucket
 * took 3.6× as long at 10,000).
 */
function readOnlyCollection (buckets: Record<string, MapProxy> | undefined): MapProxy {
  let flat: MapProxy | undefined
  let keys: string[] | undefined
  const own = (key: string): unknown => flat !== undefined ? flat[key] : buckets?.[bucketOf(key)]?.[key]
  const target: MapProxy = {}
  return new Proxy(target, {
    get (_, key) {
      if (typeof key === 'string') {
        const value = own(key)
        if (value !== undefined) return value
      }
      return Reflect.get(target, key)
    },
    has (_, key) {
      return (typeof key === 'string' && own(key) !== undefined) || Reflect.has(target, key)
    },
    ownKeys () {
      const all = flat ??= Object.assign(Object.create(null) as MapProxy, ...Object.values(buckets ?? {}))
      keys ??= Object.keys(all).sort()
      return keys
    },
    getOwnPropertyDescriptor (_, key) {
      if (typeof key !== 'string') return undefined
      const value = own(key)
      return value === undefined ? undefined : { value, writable: false, enumerable: true, configurable: true }
    },
    set () { return false },
    deleteProperty () { return false },
    defineProperty () { return false }
  })
}

/**
 * A change callback's root (`stringWriter`'s view) with a bucketed document's collections written as flat maps:
 * `d.databases[id] = record` lands in the id's bucket, reads and deletes find it there, and listing walks every
 * bucket. A flat document's root is returned itself. A whole collection cannot be replaced in a bucketed document.
 */
export function bucketWriter<T extends object> (root: T, bucketed: boolean): T {
  if (!bucketed) return root
  const collections = new Map<string, MapProxy>()
  const collectionOf = (target: T, key: Collection): MapProxy => {
    let collection = collections.get(key)
    if (collection === undefined) {
      collection = writableCollection((target as MapProxy)[BUCKETED_COLLECTIONS[key]] as Record<string, MapProxy>)
      collections.set(key, collection)
    }
    return collection
  }
  return new Proxy(root, {
    get (target, key, receiver) {
      return isCollection(key) ? collectionOf(target, key) : Reflect.get(target, key, receiver)
    },
    set (target, key, value, receiver) {
      if (isCollection(key)) throw new Error(`the ${key} of a bucketed document are written record by record, not replaced whole`)
      return Reflect.set(target, key, value, receiver)
    },
    deleteProperty (target, key) {
      if (isCollection(key)) throw new Error(`the ${key} of a bucketed document are deleted record by record`)
      return Reflect.deleteProperty(target, key)
    },
    has (target, key) {
      return isCollection(key) || Reflect.has(target, key)
    },
    ownKeys (target) {
      return [...Reflect.ownKeys(target).filter(k => typeof k !== 'string' || !BUCKET_KEYS.has(k)), ...Object.keys(BUCKETED_COLLECTIONS)]
    },
    getOwnPropertyDescriptor (target, key) {
      if (isCollection(key)) return { value: collectionOf(target, key), writable: true, enumerable: true, configurable: true }
      if (typeof key === 'string' && BUCKET_KEYS.has(key)) return undefined
      return Reflect.getOwnPropertyDescriptor(target, key)
    }
  })
}

function writableCollection (buckets: Record<string, MapProxy>): MapProxy {
  const bucket = (key: string): MapProxy => {
    const b = buckets[bucketOf(key)]
    if (b === undefined) throw new Error(`bucket ${bucketOf(key)} is missing from the document`)
    return b
  }
  return new Proxy({}, {
    get (target, key) {
      if (typeof key !== 'string') return undefined
      return bucket(key)[key] ?? Reflect.get(target, key)
    },
    set (_, key, value) {
      if (typeof key !== 'string') return false
      bucket(key)[key] = value
      return true
    },
    deleteProperty (_, key) {
      if (typeof key !== 'string') return false
      return Reflect.deleteProperty(bucket(key), key)
    },
    has (target, key) {
      return (typeof key === 'string' && bucket(key)[key] !== undefined) || Reflect.has(target, key)
    },
    ownKeys () {
      return Object.values(buckets).flatMap(b => Object.keys(b)).sort()
    },
    getOwnPropertyDescriptor (_, key) {
      if (typeof key !== 'string') return undefined
      const value = bucket(key)[key]
      return value === undefined ? undefined : { value, writable: true, enumerable: true, configurable: true }
    }
  })
}

/** The Automerge map holding `id` of `collection` in `doc` (its bucket, or the flat map): for `A.getConflicts`. */
export function parentMap (doc: A.Doc<unknown>, collection: Collection, id: string): MapProxy | undefined {
  const raw = doc as MapProxy
  if (!isBucketed(raw)) return raw[collection] as MapProxy | undefined
  return (raw[BUCKETED_COLLECTIONS[collection]] as Record<string, MapProxy> | undefined)?.[bucketOf(id)]
}
