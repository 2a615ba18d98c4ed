import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { CONSOLE_CSS, consoleHtml } from './shell.js'

/** One file of the console, ready to serve: its bytes, their gzip, and a strong ETag of the bytes. */
export interface ConsoleAsset {
  path: string
  contentType: string
  body: Buffer
  gzip: Buffer
  etag: string
}

let assets: ReadonlyMap<string, ConsoleAsset> | undefined

/**
 * The whole console, built once per process: the page shell, its stylesheet and its two scripts (compiled by tsc
 * from src/client/; read from this package's dist, never fetched). Keyed by the path under /ui.
 */
export function consoleAssets (): ReadonlyMap<string, ConsoleAsset> {
  if (assets !== undefined) return assets
  const script = (name: string): Buffer => readFileSync(new URL(`./client/${name}`, import.meta.url))
  const files: Array<[string, string, Buffer]> = [
    ['/ui', 'text/html; charset=utf-8', Buffer.from(consoleHtml())],
    ['/ui/app.css', 'text/css; charset=utf-8', Buffer.from(CONSOLE_CSS)],
    ['/ui/app.js', 'text/javascript; charset=utf-8', script('app.js')],
    // app.js imports it (an ES module): the spec editor's field locator, kept apart so Node tests it.
    ['/ui/json-locate.js', 'text/javascript; charset=utf-8', script('json-locate.js')]
  ]
  assets = new Map(files.map(([path, contentType, body]) => [path, {
    path, contentType, body, gzip: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 32)}"`
  }]))
  return assets
}

/** What a browser downloads for the console, compressed (the budget is 300 KB). */
export function consoleCompressedBytes (): number {
  return [...consoleAssets().values()].reduce((sum, a) => sum + a.gzip.length, 0)
}

/** The console's pages allow only their own script and style and talk only to their own host. */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
