import { describe, expect, it } from 'vitest'
import { applyErrors, nextRead, parseJsonLog, serverLogSql, splitLines } from './server-log.js'

// Lines as PostgreSQL 15.20 with pglogical 2.4 wrote them (a check constraint failing on the subscriber, then the
// postmaster noting the worker's exit).
const APPLY_ERROR = '{"timestamp":"2026-11-30 05:38:55.616 UTC","dbname":"app","pid":11920,"error_severity":"ERROR","state_code":"23514","message":"new row for relation \\"t\\" violates check constraint \\"v_small\\"","detail":"Failing row contains (1, 500).","context":"apply INSERT from remote relation public.t in commit before 0/19947C8, xid 732 committed at 2026-11-30 05:38:55.609277+00 (action #2) from node replorigin 1","application_name":"pglogical apply 16384:2979946351","backend_type":"pglogical apply 16384:2979946351","query_id":0}'
const WORKER_EXIT = '{"timestamp":"2026-11-30 05:38:55.636 UTC","pid":11799,"error_severity":"LOG","message":"background worker \\"pglogical apply 16384:2979946351\\" (PID 11920) exited with exit code 1","backend_type":"postmaster","query_id":0}'
const WALSENDER_ERROR = '{"timestamp":"2026-11-30 05:38:14.777 UTC","user":"pgmesh","pid":8637,"error_severity":"ERROR","message":"library \\"pglogical_output\\" may not be used as an output plugin","backend_type":"walsender","query_id":0}'
const CONNECTION_LOST = '{"timestamp":"2026-11-30 05:43:05.981 UTC","dbname":"app","pid":20420,"error_severity":"ERROR","state_code":"XX000","message":"data stream ended","backend_type":"pglogical apply 16384:1248781941","query_id":0}'

describe('server log SQL', () => {
  it('locates the JSON log and reads it as bytes, every input a parameter', () => {
    expect(serverLogSql.currentJsonLog().text).toContain("pg_catalog.pg_current_logfile('jsonlog')")
    expect(serverLogSql.read("log/x'.json", 10, 20)).toEqual({
      text: 'SELECT pg_catalog.pg_read_binary_file($1::text, $2::bigint, $3::bigint, true) AS chunk',
      values: ["log/x'.json", 10, 20]
    })
  })
})

describe('following the log', () => {
  const file = { path: 'log/postgresql-Mon.json', size: 5000 }

  it('starts at the end of a file seen for the first time', () => {
    expect(nextRead(undefined, file, 1024)).toEqual({ offset: 5000, length: 0, partial: false })
  })

  it('goes on where it stopped, and reads only what was added', () => {
    expect(nextRead({ path: file.path, offset: 4500, partial: false }, file, 1024)).toEqual({ offset: 4500, length: 500, partial: false })
  })

  it('reads a new file after a rotation from its start', () => {
    expect(nextRead({ path: 'log/postgresql-Sun.json', offset: 90_000, partial: false }, file, 1024)).toEqual({ offset: 3976, length: 1024, partial: true })
    expect(nextRead({ path: 'log/postgresql-Sun.json', offset: 90_000, partial: false }, { ...file, size: 300 }, 1024)).toEqual({ offset: 0, length: 300, partial: false })
  })

  it('starts over when the same file got shorter (truncated when its weekday came round again)', () => {
    expect(nextRead({ path: file.path, offset: 9000, partial: false }, file, 8192)).toEqual({ offset: 0, length: 5000, partial: false })
  })

  it('skips to the newest bytes when too far behind, starting inside a line', () => {
    expect(nextRead({ path: file.path, offset: 100, partial: false }, file, 1024)).toEqual({ offset: 3976, length: 1024, partial: true })
  })

  it('keeps a line still being written for the next read', () => {
    const chunk = Buffer.from(`${APPLY_ERROR}\n${WORKER_EXIT.slice(0, 40)}`)
    const { lines, next } = splitLines(chunk, { offset: 100, length: chunk.length, partial: false })
    expect(lines).toEqual([APPLY_ERROR])
    expect(next).toEqual({ offset: 100 + APPLY_ERROR.length + 1, partial: false })
  })

  it('drops the start of a line it joined in the middle', () => {
    const chunk = Buffer.from(`${APPLY_ERROR.slice(30)}\n${WORKER_EXIT}\n`)
    const { lines, next } = splitLines(chunk, { offset: 0, length: chunk.length, partial: true })
    expect(lines).toEqual([WORKER_EXIT])
    expect(next).toEqual({ offset: chunk.length, partial: false })
  })

  it('never splits a multi-byte character: only whole lines are decoded', () => {
    const line = '{"timestamp":"t","error_severity":"ERROR","message":"é"}'
    const bytes = Buffer.from(`${line}\n${line}`)
    const cut = bytes.subarray(0, Buffer.byteLength(line) + 1 + Buffer.byteLength(line) - 3) // inside the second é
    const { lines, next } = splitLines(cut, { offset: 0, length: cut.length, partial: false })
    expect(lines).toEqual([line])
    expect(next.offset).toBe(Buffer.byteLength(line) + 1)
  })

  it('moves past a line longer than a whole read instead of reading it forever', () => {
    const chunk = Buffer.from('x'.repeat(64))
    expect(splitLines(chunk, { offset: 10, length: 64, partial: true }).next).toEqual({ offset: 74, partial: true })
  })
})

describe('apply errors', () => {
  const workers = new Map([['pglogical apply 16384:2979946351', 'sub_n1_n2'], ['pglogical apply 16384:1248781941', 'sub_n3_n2']])

  it("maps apply workers' errors to their subscription, with the context and without the row values", () => {
    const errors = applyErrors(parseJsonLog([APPLY_ERROR, WORKER_EXIT, WALSENDER_ERROR, CONNECTION_LOST, 'not json']), workers)
    expect(errors).toEqual([
      {
        subscription: 'sub_n1_n2',
        error: 'new row for relation "t" violates check constraint "v_small" (apply INSERT from remote relation public.t in commit before 0/19947C8, xid 732 committed at 2026-11-30 05:38:55.609277+00 (action #2) from node replorigin 1)',
        timestamp: '2026-11-30 05:38:55.616 UTC'
      },
      { subscription: 'sub_n3_n2', error: 'data stream ended', timestamp: '2026-11-30 05:43:05.981 UTC' }
    ])
    expect(JSON.stringify(errors)).not.toContain('500')
  })

  it("ignores workers of subscriptions it was not told about (another database's)", () => {
    expect(applyErrors(parseJsonLog([APPLY_ERROR]), new Map([['pglogical apply 16385:2979946351', 'sub_n1_n2']]))).toEqual([])
  })
})
