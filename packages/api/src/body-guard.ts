import { DecodePayloadError, PayloadTooLargeError, UnsupportedMediaTypeError } from '@pgmesh/model'
import type { MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'

/**
 * Request body limits (issue 16): a spec replicates to every host, so what one client sends costs the whole
 * cluster. 1 MiB is ~100 times the largest spec the schema's own limits allow in practice.
 */
export const MAX_BODY_BYTES = 1024 * 1024
/** Deeper JSON than any request shape has (a spec is ~6 levels; service config adds a few). */
export const MAX_JSON_DEPTH = 32
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i

/** 413 in the anchor's `{name, message}` shape, before more than MAX_BODY_BYTES are read. */
export const limitBody: MiddlewareHandler = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: c => c.json(new PayloadTooLargeError(`the request body exceeds ${MAX_BODY_BYTES} bytes`).toJSON(), 413)
})

/**
 * A non-empty body must be declared JSON (415 otherwise) and nest at most MAX_JSON_DEPTH levels (400 otherwise),
 * checked in one pass over the text before anything parses it recursively. The text stays cached on the request,
 * so the route's validator parses it without reading the body again.
 */
export const guardJsonBody: MiddlewareHandler = async (c, next) => {
  if (c.req.raw.body === null) { await next(); return }
  const text = await c.req.text()
  if (text.trim() === '') { await next(); return }
  const mediaType = (c.req.header('content-type') ?? '').split(';')[0]?.trim() ?? ''
  if (!JSON_MEDIA_TYPE.test(mediaType)) throw new UnsupportedMediaTypeError()
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new DecodePayloadError(`request body could not be decoded: JSON nested deeper than ${MAX_JSON_DEPTH} levels`)
  await next()
}

/** The deepest nesting of arrays and objects in a JSON text (strings skipped); malformed text is JSON.parse's to judge. */
export function jsonDepth (text: string): number {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    if (inString) {
      if (ch === 0x5c) i++ // backslash: skip the escaped character
      else if (ch === 0x22) inString = false
    } else if (ch === 0x22) inString = true
    else if (ch === 0x5b || ch === 0x7b) deepest = Math.max(deepest, ++depth)
    else if (ch === 0x5d || ch === 0x7d) depth--
  }
  return deepest
}
