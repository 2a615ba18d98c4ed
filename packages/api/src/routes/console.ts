import type { OpenAPIHono } from '@hono/zod-openapi'
import { CONSOLE_CSP, consoleAssets } from '@pgmesh/console'
import type { Context } from 'hono'

/**
 * The web console under /ui: static files only (no data; the pages read the v1 API with the browser's credentials),
 * so they are served to anyone who reaches the host, like `/`. Gzipped when the browser accepts it.
 */
export function registerConsoleRoutes (app: OpenAPIHono): void {
  const assets = consoleAssets()
  app.get('/ui/', c => c.redirect('/ui', 301))
  app.get('/ui/*', serve)
  app.get('/ui', serve)

  function serve (c: Context): Response {
    const asset = assets.get(c.req.path)
    if (asset === undefined) return c.json({ name: 'not_found', message: `no console file ${c.req.path}` }, 404)
    c.header('Content-Type', asset.contentType)
    c.header('Content-Security-Policy', CONSOLE_CSP)
    c.header('X-Content-Type-Options', 'nosniff')
    c.header('Referrer-Policy', 'no-referrer')
    c.header('Cache-Control', 'no-cache')
    c.header('ETag', asset.etag)
    c.header('Vary', 'Accept-Encoding')
    if (c.req.header('if-none-match') === asset.etag) return c.body(null, 304)
    if (/\bgzip\b/.test(c.req.header('accept-encoding') ?? '')) {
      c.header('Content-Encoding', 'gzip')
      return c.body(new Uint8Array(asset.gzip), 200)
    }
    return c.body(new Uint8Array(asset.body), 200)
  }
}
