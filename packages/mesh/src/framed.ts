import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'

/** 64 MiB: the largest single sync message we accept (a full document sync to a new host is one message). */
const MAX_FRAME = 64 * 1024 * 1024

/** A length-prefixed message channel over one libp2p stream; the only place that knows libp2p's stream API. */
export interface Framed {
  read: () => Promise<Uint8Array>
  write: (data: Uint8Array) => Promise<void>
  close: () => Promise<void>
  abort: (err: Error) => void
}

export function frame (stream: Stream): Framed {
  const lp = lpStream(stream, { maxDataLength: MAX_FRAME })
  return {
    read: async () => (await lp.read()).subarray(),
    write: async (data) => { await lp.write(data) },
    close: async () => { await stream.close() },
    abort: (err) => { stream.abort(err) }
  }
}
