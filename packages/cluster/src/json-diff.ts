export interface DiffEntry { path: string, action: 'set' | 'removed', before?: unknown, after?: unknown }

/** Leaf-level differences between two JSON values, with anchor-style paths. */
export function jsonDiff (before: unknown, after: unknown, path: string): DiffEntry[] {
  if (isRecordValue(before) && isRecordValue(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
    return keys.flatMap(k => jsonDiff(before[k], after[k], path === '' ? k : `${path}.${k}`))
  }
  if (Array.isArray(before) && Array.isArray(after) && before.every(isRecordValue) && after.every(isRecordValue)) {
    const n = Math.max(before.length, after.length)
    return Array.from({ length: n }, (_, i) => jsonDiff(before[i], after[i], `${path}[${i}]`)).flat()
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return []
  if (after === undefined) return [{ path, action: 'removed', before }]
  return [{ path, action: 'set', ...(before === undefined ? {} : { before }), after }]
}

function isRecordValue (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

