/**
 * `load` once per key (`keyOf(input)`, by default the input itself): callers share the promise of a load in flight
 * or done; a load that fails is forgotten, so the next call tries again. For facts that hold for the daemon's
 * lifetime (what a binary or an image says of itself).
 */
export function cachedAsync<I, V> (load: (input: I) => Promise<V>, keyOf: (input: I) => unknown = input => input): (input: I) => Promise<V> {
  const known = new Map<unknown, Promise<V>>()
  return async (input: I): Promise<V> => {
    const key = keyOf(input)
    let value = known.get(key)
    if (value === undefined) {
      value = load(input)
      value.catch(() => { known.delete(key) })
      known.set(key, value)
    }
    return await value
  }
}
