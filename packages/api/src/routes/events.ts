import type { OpenAPIHono } from '@hono/zod-openapi'
import { streamSSE } from 'hono/streaming'
import type { EventFeed } from '../event-feed.js'

/** Idle streams carry a comment this often, so proxies and browsers keep them open. */
const KEEPALIVE_MS = 15_000

/**
 * `GET /v1/events`: server-sent events for the console (and any client): `hello` with the host answering, then
 * `change` with the kinds that moved (`document`, `hosts`, `observed`); clients re-read what they show. Authenticated
 * like every /v1 route; the stream ends when the client goes away or the host drains.
 */
export function registerEventRoutes (app: OpenAPIHono, feed: EventFeed, hostId: string): void {
  app.get('/v1/events', (c) => {
    c.header('Cache-Control', 'no-store')
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(c, async (stream) => {
      let finish = (): void => {}
      const finished = new Promise<void>(resolve => { finish = resolve })
      const unsubscribe = feed.subscribe({
        changed: (kinds) => { void stream.writeSSE({ event: 'change', data: JSON.stringify({ kinds }) }).catch(finish) },
        ended: finish
      })
      stream.onAbort(finish)
      const keepalive = setInterval(() => { void stream.write(': keepalive\n\n').catch(finish) }, KEEPALIVE_MS)
      try {
        await stream.writeSSE({ event: 'hello', data: JSON.stringify({ host_id: hostId }) })
        await finished
      } finally {
        clearInterval(keepalive)
        unsubscribe()
      }
    })
  })
}
