/** Metadata stored in every change's message, for latency figures and the change history. */
export interface ChangeMeta {
  host: string
  /** Wall-clock milliseconds when the change was made. */
  at: number
  /** What the change did, e.g. `host.join`, `database.update`. */
  op: string
  /** The entity it touched, e.g. a database id. */
  entity?: string
}

export function encodeChangeMeta (meta: ChangeMeta): string {
  return JSON.stringify(meta)
}

export function decodeChangeMeta (message: string | null): ChangeMeta | undefined {
  if (message === null) return undefined
  try {
    const parsed = JSON.parse(message) as Partial<ChangeMeta>
    if (typeof parsed.host !== 'string' || typeof parsed.at !== 'number' || typeof parsed.op !== 'string') return undefined
    return parsed as ChangeMeta
  } catch {
    return undefined
  }
}
