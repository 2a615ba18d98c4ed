import { joinPath, type Issue } from '../errors.js'

/** A map key inside a path; rendered `[key]` as the anchor does (`postgresql_conf[hba_file]`). */
export interface MapKey { readonly mapKey: string }
export type PathSegment = string | number | MapKey

export function mapKey (key: string): MapKey {
  return { mapKey: key }
}

/** `nodes[0].host_ids[1]`, `postgresql_conf[hba_file]`: joinPath for fields and indices, `[key]` for map keys. */
export function formatPath (segments: readonly PathSegment[]): string {
  let out = ''
  let run: Array<string | number> = []
  const flushRun = (): void => {
    if (run.length === 0) return
    const joined = joinPath(run)
    // joinPath starts a fresh path; after a map key a leading field still needs its dot.
    out += out !== '' && typeof run[0] === 'string' ? `.${joined}` : joined
    run = []
  }
  for (const segment of segments) {
    if (typeof segment === 'object') {
      flushRun()
      out += `[${displayName(segment.mapKey)}]`
    } else {
      run.push(typeof segment === 'string' ? displayName(segment) : segment)
    }
  }
  flushRun()
  return out
}

const PLAIN_NAME = /^[\x21-\x7e]{1,64}$/

/**
 * A field or key name as a path shows it: as given when it is short printable ASCII, else quoted and cut to 64
 * characters, so a client's odd key (a newline, 10,000 characters) can neither break the newline-joined message
 * apart nor make it huge.
 */
function displayName (name: string): string {
  if (PLAIN_NAME.test(name) && !/[[\]"]/.test(name)) return name
  return JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name)
}

export function issueAt (segments: readonly PathSegment[], message: string): Issue {
  return { path: formatPath(segments), message }
}

/**
 * Spec fields that are maps (`Record<string, …>`): in a zod issue path the segment after one of them is a map key,
 * not a field, and must render as `[key]`.
 */
const MAP_FIELDS: ReadonlySet<string> = new Set([
  'postgresql_conf', 'custom_options', 'restore_options', 'extra_labels', 'driver_opts', 'config'
])

/** Turns a zod issue path into path segments, marking map keys. */
export function segmentsFromZodPath (path: ReadonlyArray<PropertyKey>): PathSegment[] {
  const segments: PathSegment[] = []
  let previousWasMapField = false
  for (const raw of path) {
    const segment = typeof raw === 'symbol' ? String(raw) : raw
    if (previousWasMapField && typeof segment === 'string') {
      segments.push(mapKey(segment))
      previousWasMapField = false
      continue
    }
    segments.push(segment)
    previousWasMapField = typeof segment === 'string' && MAP_FIELDS.has(segment)
  }
  return segments
}
