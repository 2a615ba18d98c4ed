import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import type { Context } from 'hono'
import { accepts } from 'hono/accepts'

/** Smaller bodies are not worth the client's inflate. */
const GZIP_MIN_BYTES = 512

interface Representation {
  version: string
  etag: string
  json: Uint8Array<ArrayBuffer>
  gzip: Uint8Array<ArrayBuffer> | undefined
}

/**
 * A large JSON response serialized once per version of what it shows, and gzipped once on the first request that
 * accepts it, instead of once per request: serializing a thousand databases costs far more than sending them. The
 * ETag is a digest of the JSON, so every host serving the same content gives the same one, and a client polling
 * with If-None-Match gets 304 until something changed. (Hono's `etag` middleware would do that too, but it reads
 * the response body back as a stream, which costs more than this whole response.)
 */
export class CachedJson {
  private current: Representation | undefined

  respond (c: Context, version: string, build: () => unknown): Response {
    if (this.current?.version !== version) {
      const json = new TextEncoder().encode(JSON.stringify(build()))
      // Weak: the gzip and identity bodies differ byte for byte but mean the same.
      const etag = `W/"${createHash('sha256').update(json).digest('base64url').slice(0, 27)}"`
      this.current = { version, etag, json, gzip: undefined }
    }
    const representation = this.current
    c.header('content-type', 'application/json')
    c.header('etag', representation.etag)
    c.header('vary', 'accept-encoding')
    if (matches(c.req.header('if-none-match'), representation.etag)) return c.body(null, 304)
    const encoding = accepts(c, { header: 'Accept-Encoding', supports: ['gzip', 'identity'], default: 'identity' })
    if (encoding === 'gzip' && representation.json.byteLength >= GZIP_MIN_BYTES) {
      representation.gzip ??= new Uint8Array(gzipSync(representation.json))
      c.header('content-encoding', 'gzip')
      return c.body(representation.gzip, 200)
    }
    return c.body(representation.json, 200)
  }
}

/** If-None-Match's weak comparison: `*`, or any listed tag equal to ours with `W/` ignored. */
function matches (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  if (ifNoneMatch.trim() === '*') return true
  const opaque = etag.replace(/^W\//, '')
  return ifNoneMatch.split(',').some(tag => tag.trim().replace(/^W\//, '') === opaque)
}
