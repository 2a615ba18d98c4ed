import { appendFile, mkdtemp, readFile, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import pino from 'pino'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ClusterState } from './cluster-state.js'
import { DocLog, encodeRecord, parseRecords } from './doc-log.js'

const logger = pino({ level: 'silent' })

describe('document log', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'pgmesh-doclog-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('parses framed records and stops at a corrupt one', () => {
    const a = encodeRecord(new Uint8Array([1, 2, 3]))
    const b = encodeRecord(new Uint8Array([4, 5]))
    const corrupt = Buffer.from(b)
    corrupt[corrupt.length - 1] = 99
    expect(parseRecords(Buffer.concat([a, b])).records).toHaveLength(2)
    const parsed = parseRecords(Buffer.concat([a, corrupt]))
    expect(parsed.records).toHaveLength(1)
    expect(parsed.validBytes).toBe(a.length)
  })

  it('compacts once appends pause, not in the middle of a burst, and at once a log four times too long', async () => {
    let saves = 0
    const { log } = await DocLog.open(dir, () => { saves++; return new Uint8Array([saves]) }, logger)
    const record = new Uint8Array(16)
    for (let i = 0; i < 2001; i++) await log.append(record)
    expect(saves).toBe(0) // past the 2,000 records, but each append came right after the last
    await new Promise(resolve => setTimeout(resolve, 1300))
    expect(saves).toBe(1)
    expect(log.sizeBytes).toBe(0)
    // One burst four times past the threshold: compacted right after it is durable.
    await Promise.all(Array.from({ length: 8001 }, async () => { await log.append(record) }))
    await log.flush()
    expect(saves).toBe(2)
    expect(log.sizeBytes).toBe(0)
    await log.append(record)
    await log.close()
    expect(saves).toBe(3)
    expect(parseRecords(await readFile(join(dir, 'doc.snapshot'))).records).toEqual([new Uint8Array([3])])
  })

  it('keeps every acknowledged change across reopen, and drops a torn tail', async () => {
    const state = await ClusterState.open({ dir, hostId: 'h1', logger })
    await state.initialize('c1')
    for (let i = 0; i < 20; i++) {
      await state.change({ op: 'test' }, d => { d.databases[`db${i}`] = { i } as never })
    }
    // No close(): simulate a crash by just reopening from the files as they are.
    const logFile = join(dir, 'doc.log')
    const intact = (await readFile(logFile)).length
    await appendFile(logFile, Buffer.from([7, 0, 0, 0, 1, 2])) // a torn record header + partial payload
    const reopened = await ClusterState.open({ dir, hostId: 'h1', logger })
    expect(reopened.droppedBytesAtOpen).toBe(6)
    expect(Object.keys(reopened.doc.databases ?? {})).toHaveLength(20)
    expect((await readFile(logFile)).length).toBe(intact)
    // and it keeps working after the repair
    await reopened.change({ op: 'test' }, d => { d.databases.after = { ok: true } as never })
    const again = await ClusterState.open({ dir, hostId: 'h1', logger })
    expect(again.doc.databases?.after).toEqual({ ok: true })
  })

  it('loads a long log (a crash before compaction) in batches to the same document, with and without a snapshot', async () => {
    const state = await ClusterState.open({ dir, hostId: 'h1', logger })
    await state.initialize('c1')
    for (let i = 0; i < 250; i++) await state.change({ op: 'test' }, d => { d.databases[`db${i}`] = { name: `app_${i}` } as never })
    // No close(): the log holds 251 records and there is no snapshot.
    const reopened = await ClusterState.open({ dir, hostId: 'h1', logger })
    expect(reopened.heads()).toEqual(state.heads())
    expect(A.save(reopened.automergeDoc)).toEqual(A.save(state.automergeDoc))
    expect(reopened.changes()).toHaveLength(251)
    await reopened.close() // now a snapshot, and an empty log
    const again = await ClusterState.open({ dir, hostId: 'h1', logger })
    for (let i = 0; i < 150; i++) await again.change({ op: 'test' }, d => { d.databases[`more${i}`] = { i } as never })
    const last = await ClusterState.open({ dir, hostId: 'h1', logger })
    expect(last.heads()).toEqual(again.heads())
    expect(Object.keys(last.doc.databases ?? {})).toHaveLength(400)
    expect(last.doc.databases?.db7).toEqual({ name: 'app_7' })
    // and its own changes go on from there
    await last.change({ op: 'test' }, d => { d.databases.after = { ok: true } as never })
    expect((await ClusterState.open({ dir, hostId: 'h1', logger })).doc.databases?.after).toEqual({ ok: true })
  })

  it('compacts into a snapshot on close and loads from it', async () => {
    const state = await ClusterState.open({ dir, hostId: 'h1', logger })
    await state.initialize('c1')
    await state.change({ op: 'test' }, d => { d.hosts.h1 = { id: 'h1' } as never })
    await state.close()
    expect((await readFile(join(dir, 'doc.log'))).length).toBe(0)
    const reopened = await ClusterState.open({ dir, hostId: 'h1', logger })
    expect(reopened.doc.cluster?.id).toBe('c1')
    expect(reopened.doc.hosts?.h1?.id).toBe('h1')
  })

  it('refuses a corrupt snapshot instead of silently starting empty', async () => {
    const state = await ClusterState.open({ dir, hostId: 'h1', logger })
    await state.initialize('c1')
    await state.close()
    const snap = join(dir, 'doc.snapshot')
    await truncate(snap, 10)
    await expect(ClusterState.open({ dir, hostId: 'h1', logger })).rejects.toThrow(/corrupt/)
  })

  it('adopts a member\'s whole document only while empty, durably, with its history', async () => {
    const member = await ClusterState.open({ dir: join(dir, 'member'), hostId: 'h1', logger })
    await member.initialize('c1')
    for (let i = 0; i < 5; i++) await member.change({ op: 'database.create', entity: `db${i}` }, d => { d.databases[`db${i}`] = { i } as never })
    const snapshot = A.save(member.automergeDoc)

    const joiner = await ClusterState.open({ dir: join(dir, 'joiner'), hostId: 'h2', logger })
    await expect(joiner.adopt(snapshot, 'h1', () => { throw new Error('another cluster') })).rejects.toThrow(/another cluster/)
    expect(joiner.heads()).toEqual([])
    const events: string[] = []
    joiner.on('change', e => { events.push(`${e.origin}:${e.changes.length}`) })
    await joiner.adopt(snapshot, 'h1', doc => { expect(doc.cluster?.id).toBe('c1') })
    expect(joiner.heads()).toEqual(member.heads())
    expect(events).toEqual(['remote:6'])
    // Its own changes come from a new actor, so they merge back into the member's document.
    await joiner.change({ op: 'host.join', entity: 'h2' }, d => { d.hosts.h2 = { id: 'h2' } as never })
    expect(() => member.applyRemote('h2', doc => [A.loadIncremental(doc, joiner.saveSince(member.heads())), undefined])).not.toThrow()
    expect(member.heads()).toEqual(joiner.heads())
    await expect(joiner.adopt(snapshot, 'h1', () => {})).rejects.toThrow(/empty/)

    const reopened = await ClusterState.open({ dir: join(dir, 'joiner'), hostId: 'h2', logger })
    expect(reopened.heads()).toEqual(joiner.heads())
    expect(Object.keys(reopened.doc.databases ?? {})).toHaveLength(5)
  })

  it('records who changed what in each change', async () => {
    const state = await ClusterState.open({ dir, hostId: 'h9', logger })
    await state.initialize('c1')
    const meta = A.getChangesMetaSince(state.automergeDoc, []).map(c => JSON.parse(c.message ?? '{}') as { host: string, op: string })
    expect(meta[0]).toMatchObject({ host: 'h9', op: 'cluster.init' })
  })
})
