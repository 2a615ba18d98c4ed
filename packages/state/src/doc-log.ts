import { crc32 } from 'node:zlib'
import { mkdir, open, readFile, rename, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'

const HEADER = 8 // u32 length + u32 crc32, little endian
const SNAPSHOT = 'doc.snapshot'
const LOG = 'doc.log'

/** Compact the log into a snapshot beyond these sizes (loading a long log costs more than one snapshot)… */
const COMPACT_AFTER_BYTES = 4 * 1024 * 1024
const COMPACT_AFTER_RECORDS = 2000
/**
 * …once no append came for this long. A compaction saves the whole document, which blocks the process (0.27 s at
 * 10,000 databases) and every append waiting behind it: in a burst of writes it is put off, not paid by one of them.
 */
const COMPACT_WHEN_IDLE_MS = 1000
/** A log this many times past the sizes above is compacted at once, idle or not: it bounds a crash restart's replay. */
const COMPACT_ANYWAY_FACTOR = 4

export interface LoadedDocLog {
  log: DocLog
  /** The snapshot document; undefined when there is none. */
  snapshot: Uint8Array | undefined
  /** Every intact log record after the snapshot, in order. */
  records: Uint8Array[]
  /** Bytes dropped from a torn or corrupt tail. */
  droppedBytes: number
}

/**
 * Durable storage for one Automerge document: a snapshot plus an append-only log of incremental saves. Each record
 * is framed with its length and CRC32, so a torn write (kill -9, power loss) is detected on load and cut off; the
 * host then gets whatever it lost from its peers. Appends are group-committed: every append resolves only after the
 * fdatasync that covers it, so an acknowledged write survives a crash.
 */
export class DocLog {
  private pending: Array<{ data: Uint8Array, resolve: () => void, reject: (err: Error) => void }> = []
  private flushing: Promise<void> | undefined
  private logBytes: number
  private logRecords: number
  private snapshotBytes: number
  private closed = false
  private idleCompaction: NodeJS.Timeout | undefined

  private constructor (
    private readonly dir: string,
    private handle: FileHandle,
    size: number,
    records: number,
    snapshotSize: number,
    private readonly snapshotSource: () => Uint8Array,
    private readonly log: Logger
  ) {
    this.logBytes = size
    this.logRecords = records
    this.snapshotBytes = snapshotSize
  }

  /** `snapshotSource` returns the full current document (Automerge.save) when the log is compacted. */
  static async open (dir: string, snapshotSource: () => Uint8Array, log: Logger): Promise<LoadedDocLog> {
    // The document holds ciphertext only, but its history, hosts and task records are the cluster's own: 0600/0700.
    await mkdir(dir, { recursive: true, mode: 0o700 })
    let droppedBytes = 0
    const snapshot = await readIfExists(join(dir, SNAPSHOT))
    let snapshotDocument: Uint8Array | undefined
    if (snapshot !== undefined) {
      const { records, validBytes } = parseRecords(snapshot)
      if (records.length !== 1 || validBytes !== snapshot.length) {
        // The snapshot is only ever replaced by an atomic rename, so this means the disk itself lost data.
        throw new Error(`document snapshot ${join(dir, SNAPSHOT)} is corrupt`)
      }
      snapshotDocument = records[0]
    }
    const logFile = join(dir, LOG)
    const raw = (await readIfExists(logFile)) ?? new Uint8Array()
    const { records, validBytes } = parseRecords(raw)
    const handle = await open(logFile, 'a+', 0o600)
    if (validBytes < raw.length) {
      droppedBytes = raw.length - validBytes
      log.warn({ droppedBytes, keptRecords: records.length }, 'dropped a torn tail from the document log')
      await handle.truncate(validBytes)
      await handle.datasync()
    }
    return { log: new DocLog(dir, handle, validBytes, records.length, snapshot?.length ?? 0, snapshotSource, log), snapshot: snapshotDocument, records, droppedBytes }
  }

  /** Appends one record; resolves once it is on disk. */
  async append (data: Uint8Array): Promise<void> {
    if (this.closed) throw new Error('document log is closed')
    if (data.length === 0) return
    const done = new Promise<void>((resolve, reject) => { this.pending.push({ data, resolve, reject }) })
    this.kick()
    return await done
  }

  /** Waits until everything appended so far is durable. */
  async flush (): Promise<void> {
    while (this.flushing !== undefined) await this.flushing
  }

  /** Writes a snapshot of the current document and empties the log. */
  async compact (): Promise<void> {
    await this.flush()
    await this.writeSnapshot()
  }

  async close (): Promise<void> {
    clearTimeout(this.idleCompaction)
    await this.compact()
    this.closed = true
    await this.handle.close()
  }

  get sizeBytes (): number {
    return this.logBytes
  }

  /** Bytes of the document on disk, snapshot plus log: known without any work (a full save costs ~40 ms per 1,000 databases). */
  get storedBytes (): number {
    return this.snapshotBytes + this.logBytes
  }

  private kick (): void {
    if (this.flushing !== undefined) return
    this.flushing = this.drain().finally(() => { this.settled() })
  }

  /** The flush chain ended: appends made between its last check and now start the next one. */
  private settled (): void {
    this.flushing = undefined
    if (this.pending.length > 0) this.kick()
  }

  private async drain (): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending
      this.pending = []
      try {
        const frames = batch.map(p => encodeRecord(p.data))
        const buf = Buffer.concat(frames)
        await this.handle.write(buf)
        await this.handle.datasync()
        this.logBytes += buf.length
        this.logRecords += batch.length
        for (const p of batch) p.resolve()
      } catch (err) {
        for (const p of batch) p.reject(err as Error)
        continue
      }
      if (this.logBytes > COMPACT_ANYWAY_FACTOR * COMPACT_AFTER_BYTES || this.logRecords > COMPACT_ANYWAY_FACTOR * COMPACT_AFTER_RECORDS) {
        await this.compactLogged()
      } else if (this.logBytes > COMPACT_AFTER_BYTES || this.logRecords > COMPACT_AFTER_RECORDS) {
        this.compactWhenIdle()
      }
    }
  }

  /** (Re)arms the idle compaction: it runs once no append came for `COMPACT_WHEN_IDLE_MS`. */
  private compactWhenIdle (): void {
    clearTimeout(this.idleCompaction)
    this.idleCompaction = setTimeout(() => {
      this.idleCompaction = undefined
      if (this.closed) return
      if (this.flushing !== undefined || this.pending.length > 0) {
        this.compactWhenIdle()
        return
      }
      // In the flush chain, so appends made meanwhile wait for it (the snapshot is taken first, then the log emptied).
      this.flushing = this.compactLogged().then(async () => { await this.drain() }).finally(() => { this.settled() })
    }, COMPACT_WHEN_IDLE_MS)
    this.idleCompaction.unref()
  }

  private async compactLogged (): Promise<void> {
    clearTimeout(this.idleCompaction)
    if (this.logRecords === 0) return
    try { await this.writeSnapshot() } catch (err) { this.log.error({ err }, 'document log compaction failed') }
  }

  private async writeSnapshot (): Promise<void> {
    const snapshot = encodeRecord(this.snapshotSource())
    const file = join(this.dir, SNAPSHOT)
    const tmp = `${file}.tmp`
    const h = await open(tmp, 'w', 0o600)
    try {
      await h.write(snapshot)
      await h.datasync()
    } finally {
      await h.close()
    }
    await rename(tmp, file)
    await syncDir(this.dir)
    this.snapshotBytes = snapshot.length
    // A crash between the rename and this truncate leaves records that are also in the snapshot; loading them
    // again is a no-op for Automerge.
    await this.handle.truncate(0)
    await this.handle.datasync()
    this.logBytes = 0
    this.logRecords = 0
  }
}

export function encodeRecord (data: Uint8Array): Buffer {
  const header = Buffer.alloc(HEADER)
  header.writeUInt32LE(data.length, 0)
  header.writeUInt32LE(crc32(data), 4)
  return Buffer.concat([header, data])
}

/** Reads records until the first one that is short or fails its checksum. */
export function parseRecords (raw: Uint8Array): { records: Uint8Array[], validBytes: number } {
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
  const records: Uint8Array[] = []
  let offset = 0
  while (offset + HEADER <= buf.length) {
    const length = buf.readUInt32LE(offset)
    const crc = buf.readUInt32LE(offset + 4)
    const end = offset + HEADER + length
    if (end > buf.length) break
    const payload = buf.subarray(offset + HEADER, end)
    if (crc32(payload) !== crc) break
    records.push(new Uint8Array(payload))
    offset = end
  }
  return { records, validBytes: offset }
}

async function readIfExists (file: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

async function syncDir (dir: string): Promise<void> {
  const h = await open(dir, 'r')
  try { await h.sync() } finally { await h.close() }
}

export async function fileSize (file: string): Promise<number> {
  try { return (await stat(file)).size } catch { return 0 }
}
