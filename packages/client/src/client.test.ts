import { type Server, createServer } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { ApiRequestError, PgmeshClient, UnreachableError } from './index.js'

const servers: Server[] = []

/** A stand-in host on loopback answering every request with `status` and `body`, counting requests. */
async function host (status: number, body: unknown, seen: string[] = []): Promise<string> {
  const srv = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`)
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  })
  servers.push(srv)
  await new Promise<void>(r => srv.listen(0, '127.0.0.1', r))
  const address = srv.address()
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
}

/** A URL nothing listens on. */
async function closed (): Promise<string> {
  const url = await host(200, {})
  await new Promise(r => servers.pop()?.close(r))
  return url
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map(async s => { await new Promise(r => s.close(r)) }))
})

describe('PgmeshClient', () => {
  it('skips a server that refuses or is draining (503), and keeps to the one that answered', async () => {
    const seen: string[] = []
    const draining = await host(503, { name: 'shutting_down', message: 'the server is shutting down' })
    const good = await host(200, { hosts: [] }, seen)
    const client = new PgmeshClient({ servers: [await closed(), draining, good] })
    expect(await client.hosts()).toEqual([])
    expect(client.server).toBe(good)
    expect(seen).toEqual(['GET /v1/hosts'])
  })

  it('turns an error answer into ApiRequestError without trying further servers', async () => {
    const seen: string[] = []
    const refusing = await host(409, { name: 'cluster_not_initialized', message: 'this operation is invalid on an uninitialized cluster' })
    const other = await host(200, {}, seen)
    const err = await new PgmeshClient({ servers: [refusing, other] }).databases().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiRequestError)
    expect(err).toMatchObject({ status: 409, apiName: 'cluster_not_initialized', server: refusing })
    expect(seen).toEqual([])
  })

  it('lists every attempt when no server answers', async () => {
    const a = await closed()
    const err = await new PgmeshClient({ servers: [a, `${a}/`] }).version().catch((e: unknown) => e) as UnreachableError
    expect(err).toBeInstanceOf(UnreachableError)
    expect(err.attempts.map(x => x.error)).toEqual(['ECONNREFUSED', 'ECONNREFUSED'])
    expect(err.maybeApplied).toBe(false)
  })

  it('does not resend a change whose answer was lost after it was sent', async () => {
    const srv = createServer((req) => { req.socket.destroy() })
    servers.push(srv)
    await new Promise<void>(r => srv.listen(0, '127.0.0.1', r))
    const address = srv.address()
    const hanging = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
    const seen: string[] = []
    const other = await host(200, { task: {} }, seen)
    const err = await new PgmeshClient({ servers: [hanging, other] }).deleteDatabase('x').catch((e: unknown) => e) as UnreachableError
    expect(err.maybeApplied).toBe(true)
    expect(seen).toEqual([])
  })

  it('puts queries and scoped task paths where the anchor has them', async () => {
    const seen: string[] = []
    const url = await host(200, { tasks: [], entries: [] }, seen)
    const client = new PgmeshClient({ servers: [url] })
    await client.tasks({ scope: 'host', entityId: 'host-2', limit: 5 })
    await client.taskLog({ scope: 'host', entityId: 'host-2', taskId: 't' }, { afterEntryId: 'e' })
    await client.taskLog({ scope: 'database', entityId: 'db', taskId: 't' })
    await client.deleteDatabase('db', { force: true })
    await client.database('db', { includeUpgrades: true })
    await client.databases({ includeUpgrades: true })
    await client.upgradeDatabase('db', 'pgmesh/postgres:15.20')
    expect(seen).toEqual(['GET /v1/hosts/host-2/tasks?limit=5', 'GET /v1/hosts/host-2/tasks/t/logs?after_entry_id=e', 'GET /v1/databases/db/tasks/t/log', 'DELETE /v1/databases/db?force=true',
      'GET /v1/databases/db?include=available_upgrades', 'GET /v1/databases?include=available_upgrades', 'POST /v1/databases/db/upgrade'])
  })
})
