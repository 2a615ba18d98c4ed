// Minor versions on a process host (real daemon, real Postgres from Debian's packages): the host reports what its
// installed binaries provide, an instance what its server runs, and POST /upgrade says what an upgrade is there.
import { execFileSync } from 'node:child_process'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli } from './helpers/cli.js'
import { type DaemonProcess, TestCluster, until } from './helpers/cluster.js'

let cluster: TestCluster | undefined
let host: DaemonProcess

/** What the installed binary says, `major.minor`. */
const installed = /\(PostgreSQL\) (\d+\.\d+)/.exec(execFileSync('/usr/lib/postgresql/15/bin/postgres', ['--version'], { encoding: 'utf8' }))?.[1]

describe('minor versions on a process host', () => {
  beforeAll(async () => {
    cluster = await TestCluster.create('upgrades')
    ;[host] = await cluster.initAndJoin(1) as [DaemonProcess]
  }, 60_000)

  afterAll(async () => {
    await cluster?.destroy()
  })

  it("reports the installed binaries' version as the host's supported and default version", async () => {
    expect(installed).toMatch(/^15\.\d+$/)
    const reported = await until('versions reported', async () => {
      const h = (await host.get('/v1/hosts/host-1')).body
      return h.supported_pgedge_versions === undefined ? undefined : h
    }, 20_000, 200)
    expect(reported.supported_pgedge_versions).toContainEqual({ postgres_version: installed })
    expect(reported.default_pgedge_version).toEqual({ postgres_version: installed })
  })

  it("reports an instance's postgres version as its server's server_version, and explains a minor upgrade", { timeout: 120_000 }, async () => {
    const res = await host.post('/v1/databases', {
      id: 'app',
      spec: {
        database_name: 'app',
        port: 0,
        database_users: [{ username: 'admin', password: 'app-password', db_owner: true, attributes: ['LOGIN'] }],
        nodes: [{ name: 'n1', host_ids: ['host-1'] }]
      }
    })
    expect(res.status, JSON.stringify(res.body)).toBe(200)
    expect(res.body.database.spec.postgres_version).toBe(installed)
    const db = await until('app available', async () => {
      const d = (await host.get('/v1/databases/app')).body
      return d.state === 'available' ? d : undefined
    }, 90_000, 250)
    const instance = db.instances[0]
    const client = new pg.Client({ host: instance.connection_info.addresses[0], port: instance.connection_info.port, user: 'admin', password: 'app-password', database: 'app' })
    await client.connect()
    const serverVersion = (await client.query('SHOW server_version')).rows[0].server_version as string
    await client.end()
    expect(instance.postgres.version).toBe(/^\d+\.\d+/.exec(serverVersion)?.[0])
    expect(instance.postgres.version).toBe(installed)

    // No manifest image runs here; upgrades are package upgrades, and the answer says how.
    expect((await host.get('/v1/databases/app?include=available_upgrades')).body.available_upgrades).toBeUndefined()
    const upgrade = await host.post('/v1/databases/app/upgrade', { image: 'pgmesh/postgres:15.20' })
    expect(upgrade.status).toBe(400)
    expect(upgrade.body.name).toBe('invalid_input')
    expect(upgrade.body.message).toContain(`upgrade not available: database app runs on process hosts (host-1), whose PostgreSQL is what their installed packages provide, not an image (running: ${installed as string})`)
    expect(upgrade.body.message).toContain('apt-get install postgresql-15')
    expect(upgrade.body.message).toContain('POST /v1/databases/app?force_update=true')

    // The CLI says the same: nothing to list, and the API's refusal (exit 3) when an image is named.
    const server = ['--server', host.url]
    expect(await cli(['db', 'upgrade', 'app', ...server])).toMatchObject({ code: 0, stdout: 'no upgrade available for app\n' })
    const refused = await cli(['db', 'upgrade', 'app', 'pgmesh/postgres:15.20', ...server])
    expect(refused.code).toBe(3)
    expect(refused.stderr).toContain('upgrade not available: database app runs on process hosts')
  })
})
