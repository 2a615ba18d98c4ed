/**
 * How a database spec is laid out in the cluster document. Lists whose items have a name (nodes, users, services)
 * are stored as a map by name plus an order list, so that concurrent edits of different items, and concurrent
 * additions, all survive a merge; every other list is one value.
 */
const KEYED_LISTS: Record<string, string> = { nodes: 'name', database_users: 'username', services: 'service_id' }

export interface KeyedList { order: string[], items: Record<string, Record<string, unknown>> }

export type EncodedSpec = Record<string, unknown>

export function encodeSpec (spec: Record<string, unknown>): EncodedSpec {
  const out: EncodedSpec = {}
  for (const [key, value] of Object.entries(spec)) {
    const idField = KEYED_LISTS[key]
    if (idField !== undefined && Array.isArray(value)) {
      const list: KeyedList = { order: [], items: {} }
      for (const item of value as Array<Record<string, unknown>>) {
        const id = String(item[idField])
        list.order.push(id)
        list.items[id] = item
      }
      out[key] = list
    } else if (value !== undefined) {
      out[key] = value
    }
  }
  return out
}

/**
 * Back to the API's shape. After a merge the order list can name an item twice (both sides added it) or miss one;
 * items come out once each, in list order, then any unlisted ones by name.
 */
export function decodeSpec (encoded: EncodedSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(encoded)) {
    if (KEYED_LISTS[key] !== undefined && isKeyedList(value)) {
      const seen = new Set<string>()
      const items: unknown[] = []
      for (const id of value.order.map(String)) {
        const item = value.items[id]
        if (item === undefined || seen.has(id)) continue
        seen.add(id)
        items.push(item)
      }
      for (const id of Object.keys(value.items).sort()) if (!seen.has(id)) items.push(value.items[id])
      out[key] = items
    } else {
      out[key] = value
    }
  }
  return out
}

export function isKeyedListKey (key: string): boolean {
  return KEYED_LISTS[key] !== undefined
}

/**
 * One order for a keyed list whose order hosts wrote concurrently (each side added or removed its own items): the
 * order shown first, then the ids only the others list, in their order. Adding or removing different items is no
 * conflict (the items are keyed by name); `conflicting` is true only when two lists order the ids they share
 * differently.
 */
export function mergeOrders (orders: ReadonlyArray<readonly unknown[]>): { order: string[], conflicting: boolean } {
  const lists = orders.map(o => [...new Set(o.map(String))])
  const order = [...new Set(lists.flat())]
  const conflicting = lists.some((x, i) => lists.slice(i + 1).some(y => {
    const shared = new Set(y)
    const xs = x.filter(id => shared.has(id))
    const inX = new Set(xs)
    const ys = y.filter(id => inX.has(id))
    return xs.some((id, k) => id !== ys[k])
  }))
  return { order, conflicting }
}

function isKeyedList (v: unknown): v is KeyedList {
  return typeof v === 'object' && v !== null && 'order' in v && 'items' in v
}
