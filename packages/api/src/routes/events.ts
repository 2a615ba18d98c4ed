import type { OpenAPIHono } from '@hono/zod-openapi'
import { streamSSE } from 'hono/streaming'
import type { EventFeed } from '../event-feed.js'

/** Idle streams carry a comment this often, so proxies and browsers keep them open. */
const KEEPALIVE_MS = 15_000

/**
 * `GET /v1/events`: server-sent events for the console (and any client): `hello` with the host answering, then
 * `change` with the kinds that moved (`document`, `hosts`, `observed`), after which clients re-read what they show;
 * `task` with a task (as `GET .../tasks/{id}` answers it) whose status changed; `task_log` with a task's new log
 * entries from any host as they are written (`{task_id, entries: [{id, timestamp, message, fields}]}`; gossip may
 * drop one, so a client that must have every entry reads the log once the task ends). Authenticated like every /v1
 * route; the stream ends when the client goes away or the host drains.
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
        task: (task) => { void stream.writeSSE({ event: 'task', data: JSON.stringify(task) }).catch(finish) },
        taskLog: (event) => { void stream.writeSSE({ event: 'task_log', data: JSON.stringify(event) }).catch(finish) },
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
