import { randomInt } from 'node:crypto'
import { createServer } from 'node:net'

/** The anchor's pool for `port: 0` instances. */
const RANDOM_PORT_RANGE = { min: 5432, max: 15432 } as const

/** True when a TCP listener can bind host:port right now (nothing else listens there). */
export async function isPortBindable (host: string, port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.once('error', () => { resolve(false) })
    server.listen({ host, port, exclusive: true }, () => {
      server.close(() => { resolve(true) })
    })
  })
}

/**
 * A random port from the anchor's range that no other instance holds (`taken`, including stopped instances, whose
 * ports must stay theirs) and that binds on every listen address now.
 */
export async function pickFreePort (hosts: readonly string[], taken: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(RANDOM_PORT_RANGE.min, RANDOM_PORT_RANGE.max + 1)
    if (taken.has(port)) continue
    const bindable = await Promise.all(hosts.map(async host => await isPortBindable(host, port)))
    if (bindable.every(Boolean)) return port
  }
  throw new Error(`no free port found in ${RANDOM_PORT_RANGE.min}-${RANDOM_PORT_RANGE.max}`)
}
