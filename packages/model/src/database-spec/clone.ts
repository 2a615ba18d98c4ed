/**
 * A deep copy of a JSON-like tree in which every object appears once. structuredClone keeps shared references, so
 * a caller that reused one repository object in two nodes would see a secret filled into one appear in the other.
 */
export function cloneTree<T> (value: T): T {
  if (Array.isArray(value)) return value.map(cloneTree) as T
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [key, child] of Object.entries(value)) out[key] = cloneTree(child)
    return out as T
  }
  return value
}
