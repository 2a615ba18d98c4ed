import { execute, type Queryable, type Sql } from './driver.js'

/**
 * Why a subscription's apply worker fails is in no catalog of pglogical (nor of Spock): only the server log has it.
 * With `log_destination` including `jsonlog` (and logging_collector on), each line of that file is one JSON object;
 * the apply worker's lines carry `backend_type` `pglogical apply <database oid>:<subscription id>` (Spock: `spock
 * apply …`), so they map to a subscription without parsing free text. The file is read over SQL, through the same
 * superuser connection the reconciler already has, so it works wherever the instance runs (a process, a container).
 */
export const serverLogSql = {
  /** Rows `{ path, size }`: the JSON log file the server writes now (relative to its data directory); none without jsonlog. */
  currentJsonLog: (): Sql => ({
    text: `SELECT f.path, (pg_catalog.pg_stat_file(f.path, true)).size::bigint AS size
  FROM (SELECT pg_catalog.pg_current_logfile('jsonlog') AS path) f WHERE f.path IS NOT NULL`,
    values: []
  }),
  /**
   * Rows `{ chunk }`: up to `length` bytes from `offset`, as bytes (pg_read_file would refuse a chunk that ends inside
   * a multi-byte character); null when the file is gone.
   */
  read: (path: string, offset: number, length: number): Sql => ({
    text: 'SELECT pg_catalog.pg_read_binary_file($1::text, $2::bigint, $3::bigint, true) AS chunk',
    values: [path, offset, length]
  })
}

/** The fields of a jsonlog line that matter here (PostgreSQL 15's names). */
export interface JsonLogEntry {
  timestamp: string
  error_severity: string
  message: string
  backend_type?: string
  context?: string
}

/** Where the next read of the log starts; `partial` when it starts inside a line, which is then skipped. */
export interface LogPosition { path: string, offset: number, partial: boolean }

export interface LogRead { offset: number, length: number, partial: boolean }

/**
 * What to read next of the current log file. A file seen for the first time is read from its end (what it held
 * before is history: a failing worker logs its error again on its next attempt); a new file after a rotation from its
 * start; the same name shorter than the offset (truncated on rotation) from its start too. More than `maxBytes`
 * behind, only the newest `maxBytes` are read, so a chatty server never leaves the reader lagging.
 */
export function nextRead (position: LogPosition | undefined, file: { path: string, size: number }, maxBytes: number): LogRead {
  let offset: number
  let partial = false
  if (position === undefined) offset = file.size
  else if (position.path !== file.path || file.size < position.offset) offset = 0
  else {
    offset = position.offset
    partial = position.partial
  }
  if (file.size - offset > maxBytes) {
    offset = file.size - maxBytes
    partial = true
  }
  return { offset, length: file.size - offset, partial }
}

/**
 * The complete lines of a chunk read at `read`, and where the next read starts: after the last newline, so a line
 * still being written is read whole next time. A line longer than a whole chunk is skipped.
 */
export function splitLines (chunk: Buffer, read: LogRead): { lines: string[], next: Omit<LogPosition, 'path'> } {
  let start = 0
  if (read.partial) {
    const firstNewline = chunk.indexOf(0x0a)
    if (firstNewline < 0) return { lines: [], next: { offset: read.offset + chunk.length, partial: true } }
    start = firstNewline + 1
  }
  const end = chunk.lastIndexOf(0x0a) + 1
  if (end <= start) return { lines: [], next: { offset: read.offset + start, partial: false } }
  const lines = chunk.subarray(start, end).toString('utf8').split('\n').filter(l => l !== '')
  return { lines, next: { offset: read.offset + end, partial: false } }
}

export function parseJsonLog (lines: readonly string[]): JsonLogEntry[] {
  const out: JsonLogEntry[] = []
  for (const line of lines) {
    try {
      const entry = JSON.parse(line) as Partial<JsonLogEntry>
      if (typeof entry.message === 'string' && typeof entry.error_severity === 'string' && typeof entry.timestamp === 'string') out.push(entry as JsonLogEntry)
    } catch {
      // Not a jsonlog line (a file written with another log_destination): nothing to learn from it.
    }
  }
  return out
}

export interface ApplyError {
  subscription: string
  /** The server's message and its context (which change failed); the detail is left out, it can hold row values. */
  error: string
  timestamp: string
}

/** The errors of apply workers, mapped to their subscription by `workers` (backend_type → subscription name). */
export function applyErrors (entries: readonly JsonLogEntry[], workers: ReadonlyMap<string, string>): ApplyError[] {
  const out: ApplyError[] = []
  for (const entry of entries) {
    if (entry.error_severity !== 'ERROR' && entry.error_severity !== 'FATAL') continue
    const subscription = entry.backend_type === undefined ? undefined : workers.get(entry.backend_type)
    if (subscription === undefined) continue
    out.push({ subscription, error: entry.context === undefined ? entry.message : `${entry.message} (${entry.context})`, timestamp: entry.timestamp })
  }
  return out
}

/** Default for how much of the log one read takes at most. */
const MAX_READ_BYTES = 1 << 20

/** Follows one server's JSON log across polls: each `read` returns the entries written since the previous one. */
export class JsonLogTail {
  private position: LogPosition | undefined

  constructor (private readonly maxBytes = MAX_READ_BYTES) {}

  async read (conn: Queryable): Promise<JsonLogEntry[]> {
    const [file] = await execute<{ path: string, size: string | null }>(conn, serverLogSql.currentJsonLog())
    if (file?.size === undefined || file.size === null) return []
    const current = { path: file.path, size: Number(file.size) }
    const read = nextRead(this.position, current, this.maxBytes)
    if (read.length === 0) {
      this.position = { path: current.path, offset: read.offset, partial: read.partial }
      return []
    }
    const [row] = await execute<{ chunk: Buffer | null }>(conn, serverLogSql.read(current.path, read.offset, read.length))
    const chunk = row?.chunk ?? Buffer.alloc(0)
    const { lines, next } = splitLines(chunk, read)
    this.position = { path: current.path, ...next }
    return parseJsonLog(lines)
  }
}
