// The operator's CLI against real daemons on loopback (control-only hosts: the desired state, no Postgres), run as
// its user runs it: `node cmd/pgmesh/dist/main.js …` as a child process, tables snapshotted, JSON parsed, exit codes.
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, TestCluster, freePort, hostStates, until } from './helpers/cluster.js'
import { cli, cliJson, stable } from './helpers/cli.js'

let cluster: TestCluster
let h1: DaemonProcess
let h2: DaemonProcess
let dead: string
let files: string

const SPEC = `database_name: shop
database_users:
  - { username: admin, password: secret, db_owner: true, attributes: [LOGIN] }
nodes:
  - { name: n1, host_ids: [host-1] }
  - { name: n2, host_ids: [host-2] }
`

describe('pgmesh, the client of any host', () => {
  beforeAll(async () => {
    cluster = await TestCluster.create('cli', { reconcile: false, logLevel: 'warn' })
    h1 = await cluster.add('host-1')
    h2 = await cluster.add('host-2')
    dead = `http://127.0.0.1:${await freePort()}`
    files = join(cluster.root, 'files')
    await mkdir(files)
  })

  afterAll(async () => {
    await cluster?.destroy()
  })

  const on = (d: DaemonProcess): string[] => ['--server', d.url]

  it('initializes the cluster on one host and joins the other with the token, through each host\'s own API', async () => {
    const init = await cli(['cluster', 'init', '--cluster-id', 'cli', ...on(h1)])
    expect(init.code, init.stderr).toBe(0)
    expect(init.stdout).toMatch(/^Cluster initialized on http:\/\/127\.0\.0\.1:\d+\.\ntoken: +PGEDGE-[0-9a-f]{64}-[0-9a-f]{32}\n/)
    const again = await cli(['cluster', 'init', ...on(h1)])
    expect(again.code).toBe(3)
    expect(again.stderr).toContain('cluster_already_initialized (HTTP 409')

    const token = await cliJson<{ token: string, server_urls: string[] }>(['cluster', 'join-token', ...on(h1)])
    expect(token.server_urls).toEqual([h1.url])
    const join = await cli(['cluster', 'join', '--token', token.token, '--from', token.server_urls.join(','), ...on(h2)])
    expect(join.code, join.stderr).toBe(0)
    expect(join.stdout).toBe(`${h2.url} joined the cluster.\n`)
    await until('both hosts healthy on both', async () => {
      for (const d of [h1, h2]) if (Object.values(await hostStates(d)).filter(s => s === 'healthy').length !== 2) return false
      return true
    })
  })

  it('lists hosts and the cluster\'s status as aligned tables', async () => {
    const hosts = await cli(['hosts', ...on(h2)])
    expect(hosts.code).toBe(0)
    expect(stable(hosts.stdout)).toMatchInlineSnapshot(`
      "HOST    STATE    ORCHESTRATOR  API                     CLIENT ADDRESSES  VERSION
      host-1  healthy  process       http://127.0.0.1:PPPPP  127.0.0.1         0.1.0
      host-2  healthy  process       http://127.0.0.1:PPPPP  127.0.0.1         0.1.0
      "
    `)
    const status = await cli(['cluster', 'status', ...on(h1)])
    expect(stable(status.stdout)).toMatchInlineSnapshot(`
      "Cluster cli: 2 hosts (2 healthy), 0 databases

      HOST    STATE    ORCHESTRATOR  API                     CLIENT ADDRESSES  VERSION
      host-1  healthy  process       http://127.0.0.1:PPPPP  127.0.0.1         0.1.0
      host-2  healthy  process       http://127.0.0.1:PPPPP  127.0.0.1         0.1.0
      "
    `)
    const yaml = parse((await cli(['hosts', '-o', 'yaml', ...on(h1)])).stdout) as { hosts: Array<{ id: string }> }
    expect(yaml.hosts.map(h => h.id)).toEqual(['host-1', 'host-2'])
  })

  it('refuses a bad spec with the API\'s path-prefixed lines and exit code 3', async () => {
    const bad = join(files, 'bad.yaml')
    await writeFile(bad, 'database_name: bad\nnodes:\n  - { name: n1, host_ids: [host-1, host-1] }\n  - { name: n1, host_ids: [host-9] }\n')
    const res = await cli(['db', 'create', '-f', bad, '--id', 'bad', ...on(h1)])
    expect(res.code).toBe(3)
    expect(res.stdout).toBe('')
    expect(stable(res.stderr)).toMatchInlineSnapshot(`
      "error: invalid_input (HTTP 400 from http://127.0.0.1:PPPPP)
        nodes[0].host_ids[1]: host IDs must be unique within a node
        nodes[1]: node names must be unique within a database
        nodes[1].host_ids[0]: got invalid host ids: host-9
      "
    `)
    const notYaml = join(files, 'broken.yaml')
    await writeFile(notYaml, 'nodes: [\n')
    const broken = await cli(['db', 'create', '-f', notYaml, ...on(h1)])
    expect(broken.code).toBe(2)
    expect(broken.stderr).toContain('not valid YAML')
  })

  it('creates databases from a bare YAML spec with --id and from a JSON request body, and lists them', async () => {
    const spec = join(files, 'shop.yaml')
    await writeFile(spec, SPEC)
    const created = await cli(['db', 'create', '-f', spec, '--id', 'shop', ...on(h2)])
    expect(created.code, created.stderr).toBe(0)
    expect(stable(created.stdout)).toBe('Task TASK-ID-000000000000000000000000000000 (create shop) pending. Follow it: pgmesh task logs TASK-ID-000000000000000000000000000000 --follow\n')

    const body = join(files, 'body.json')
    await writeFile(body, JSON.stringify({ id: 'catalog', spec: { database_name: 'catalog', nodes: [{ name: 'n1', host_ids: ['host-1'] }] } }))
    const res = await cliJson<{ task: { type: string, entity_id: string }, database: { state: string } }>(['db', 'create', '-f', body, ...on(h1)])
    expect(res.task).toMatchObject({ type: 'create', entity_id: 'catalog' })
    expect(res.database.state).toBe('creating')
    const mismatch = await cli(['db', 'create', '-f', body, '--id', 'other', ...on(h1)])
    expect(mismatch.code).toBe(2)
    expect(mismatch.stderr).toBe('error: --id other differs from the file\'s id catalog\n')

    await until('both databases on host-2', async () => (await cliJson<{ databases: unknown[] }>(['db', 'list', ...on(h2)])).databases.length === 2)
    const list = await cli(['db', 'list', ...on(h2)])
    expect(stable(list.stdout)).toMatchInlineSnapshot(`
      "DATABASE  STATE     NODES  INSTANCES      UPDATED
      catalog   creating  n1     0/1 available  YYYY-MM-DDTHH:MM:SSZ
      shop      creating  n1,n2  0/2 available  YYYY-MM-DDTHH:MM:SSZ
      "
    `)
    const got = await cli(['db', 'get', 'shop', ...on(h1)])
    expect(stable(got.stdout)).toMatchInlineSnapshot(`
      "id:             shop
      state:          creating
      database name:  shop
      postgres:       15.20
      nodes:          n1 (host-1), n2 (host-2)
      users:          admin (owner)
      created:        YYYY-MM-DDTHH:MM:SSZ
      updated:        YYYY-MM-DDTHH:MM:SSZ

      NODE  INSTANCE          HOST    ROLE  STATE    ADDRESS  SUBSCRIPTIONS
      n1    shop-n1-689qacsi  host-1  -     unknown  -        -
      n2    shop-n2-9ptayhma  host-2  -     unknown  -        -
      "
    `)
    const yaml = parse((await cli(['db', 'get', 'shop', '-o', 'yaml', ...on(h1)])).stdout) as { spec: { database_name: string, database_users: Array<Record<string, unknown>> } }
    expect(yaml.spec.database_name).toBe('shop')
    expect(yaml.spec.database_users[0]?.password).toBeUndefined()
    const info = await cli(['db', 'connect-info', 'shop', ...on(h1)])
    expect(info.stdout).toBe('No instance of shop reports connection info yet.\n')
  })

  it('updates from a file, edits in $EDITOR (unchanged sends nothing, a refused edit exits 3), and shows history and diffs', async () => {
    const spec = join(files, 'shop-2.yaml')
    await writeFile(spec, `spec:\n${SPEC.trimEnd().split('\n').map(l => `  ${l}`).join('\n')}\n  postgresql_conf: { work_mem: 8MB }\n`)
    const updated = await cliJson<{ task: { type: string } }>(['db', 'update', 'shop', '-f', spec, ...on(h1)])
    expect(updated.task.type).toBe('update')

    const unchanged = await cli(['db', 'edit', 'shop', ...on(h1)], { env: { EDITOR: 'true', VISUAL: undefined } })
    expect(unchanged.code).toBe(0)
    expect(unchanged.stderr).toBe('Edit cancelled: the spec is unchanged, nothing was sent.\n')
    const edited = await cli(['db', 'edit', 'shop', ...on(h1)], { env: { VISUAL: 'sed -i -e s/8MB/16MB/' } })
    expect(edited.code, edited.stderr).toBe(0)
    expect(edited.stdout).toMatch(/^Task \S+ \(update shop\) pending/)
    const refused = await cli(['db', 'edit', 'shop', ...on(h1)], { env: { VISUAL: 'sed -i -e "$ a bogus_field: 1"' } })
    expect(refused.code).toBe(3)
    expect(stable(refused.stderr)).toBe('error: invalid_input (HTTP 400 from http://127.0.0.1:PPPPP)\n  spec.bogus_field: unknown field\n')

    const history = await cliJson<{ changes: Array<{ version: string, operation: string }> }>(['db', 'history', 'shop', ...on(h2)])
    expect(history.changes.map(c => c.operation)).toEqual(['database.create', 'database.update', 'database.update'])
    const table = await cli(['db', 'history', 'shop', ...on(h2)])
    expect(table.stdout.split('\n')[0]).toBe('VERSION       TIME                  HOST    OPERATION')
    const [first, , last] = history.changes.map(c => c.version.slice(0, 10))
    const diff = await cli(['db', 'history', 'shop', '--diff', `${first ?? ''}..${last ?? ''}`, ...on(h2)])
    expect(diff.code, diff.stderr).toBe(0)
    expect(diff.stdout).toContain('+ spec.postgresql_conf: {"work_mem":"16MB"}\n')
    expect((await cli(['db', 'history', 'shop', '--diff', 'zz', ...on(h2)])).code).toBe(2)
    const conflicts = await cli(['db', 'conflicts', 'shop', ...on(h2)])
    expect(conflicts.stdout).toBe('No conflicts on shop.\n')
  })

  it('lists, gets, reads and cancels tasks; a task is found by id alone', async () => {
    const tasks = await cliJson<{ tasks: Array<{ task_id: string, type: string, status: string }> }>(['task', 'list', '--db', 'shop', ...on(h2)])
    expect(tasks.tasks.map(t => t.type)).toEqual(['update', 'update', 'create'])
    const newest = tasks.tasks[0]?.task_id ?? ''
    const got = await cli(['task', 'get', newest, ...on(h2)])
    expect(stable(got.stdout)).toMatchInlineSnapshot(`
      "task:     TASK-ID-000000000000000000000000000000
      type:     update
      status:   pending
      scope:    database shop
      created:  YYYY-MM-DDTHH:MM:SSZ
      "
    `)
    const all = await cli(['task', 'list', ...on(h1)])
    expect(all.stdout.split('\n')[0]).toMatch(/^TASK {34}SCOPE {5}ENTITY +TYPE +STATUS +CREATED {15}COMPLETED +ERROR$/)
    const canceled = await cliJson<{ status: string }>(['task', 'cancel', newest, '--db', 'shop', ...on(h1)])
    expect(canceled.status).toBe('canceling')
    const logs = await cli(['task', 'logs', newest, ...on(h2)])
    expect(stable(logs.stdout)).toBe([
      'YYYY-MM-DDTHH:MM:SSZ host-1  task created  force_update=false',
      'YYYY-MM-DDTHH:MM:SSZ host-1  task is canceling  status=canceling',
      ''
    ].join('\n'))
    const missing = await cli(['task', 'get', '01a22ba4-21c8-766b-95ab-4bbcacd28a2b', ...on(h1)])
    expect(missing.code).toBe(3)
    expect(missing.stderr).toContain('no task found with the given ID')
  })

  it('tries the servers in order: a host that is down is skipped; none answering exits 5', async () => {
    const res = await cliJson<{ databases: unknown[] }>(['db', 'list', '--server', `${dead},${h1.url}`])
    expect(res.databases).toHaveLength(2)
    const env = await cli(['db', 'list'], { env: { PGMESH_SERVER: `${dead},${h2.url}` } })
    expect(env.code).toBe(0)
    expect(env.stdout).toContain('shop')
    const none = await cli(['db', 'list', '--server', dead])
    expect(none.code).toBe(5)
    expect(none.stderr).toBe(`error: no server answered\n  ${dead}: ECONNREFUSED\n  (set the servers with --server URL[,URL...], PGMESH_SERVER or the config file)\n`)
  })

  it('reads the servers and the output format from $XDG_CONFIG_HOME/pgmesh/config.json; flags and env win', async () => {
    const xdg = join(cluster.root, 'xdg')
    await mkdir(join(xdg, 'pgmesh'), { recursive: true })
    await writeFile(join(xdg, 'pgmesh', 'config.json'), JSON.stringify({ server: [dead, h2.url], output: 'json' }))
    const res = await cli(['db', 'list'], { env: { XDG_CONFIG_HOME: xdg } })
    expect(res.code, res.stderr).toBe(0)
    expect(JSON.parse(res.stdout).databases).toHaveLength(2)
    const table = await cli(['db', 'list', '-o', 'table', '--server', dead], { env: { XDG_CONFIG_HOME: xdg } })
    expect(table.code).toBe(5)
    await writeFile(join(xdg, 'pgmesh', 'config.json'), JSON.stringify({ servers: 'x' }))
    const bad = await cli(['db', 'list'], { env: { XDG_CONFIG_HOME: xdg } })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('servers: unknown setting (known: server, output, ca_cert, client_cert, client_key, token)')
  })

  it('exits 2 on usage errors, without touching the network', async () => {
    expect((await cli(['db', 'get'])).code).toBe(2)
    expect((await cli(['db', 'list', '-o', 'xml'])).code).toBe(2)
    expect((await cli(['db', 'list', '--server', 'ftp://x'])).stderr).toBe('error: ftp://x: only http:// and https:// servers\n')
    expect((await cli(['db', 'switchover', 'shop', 'n1', '--scheduled-at', 'tomorrow', '--server', dead])).code).toBe(2)
    expect((await cli(['task', 'cancel', 'x'])).code).toBe(2)
    const help = await cli(['db', 'create', '--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain('Example:\n  pgmesh db create -f storefront.yaml --id storefront --wait')
  })

  it('prints bash and zsh completion; bash completes subcommands and options', async () => {
    const bash = await cli(['completion', 'bash'])
    expect(bash.code).toBe(0)
    const complete = async (words: string[]): Promise<string> => {
      const script = `${bash.stdout}\nCOMP_WORDS=(${words.map(w => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _pgmesh_complete; echo "\${COMPREPLY[*]}"`
      return await new Promise((resolve, reject) => {
        execFile('bash', ['-c', script], (err, stdout) => { if (err !== null) reject(err); else resolve(stdout.trim()) })
      })
    }
    expect(await complete(['pgmesh', 'db', 'cr'])).toBe('create')
    expect(await complete(['pgmesh', 'task', 'logs', 'x', '--fo'])).toBe('--follow')
    expect((await complete(['pgmesh', ''])).split(' ')).toEqual(expect.arrayContaining(['run', 'cluster', 'db', 'hosts', 'instance', 'task', 'completion']))
    const zsh = await cli(['completion', 'zsh'])
    expect(zsh.stdout).toMatch(/^#compdef pgmesh\n/)
    expect(zsh.stdout).toContain("'create:create a database from a spec file")
    expect((await cli(['completion', 'fish'])).code).toBe(2)
  })

  it('keeps working while a host is down, and removes a host', async () => {
    await h2.stop('SIGKILL')
    const res = await cliJson<{ hosts: Array<{ id: string }> }>(['hosts', '--server', `${h2.url},${h1.url}`])
    expect(res.hosts.map(h => h.id)).toEqual(['host-1', 'host-2'])
    await until('host-2 unreachable on host-1', async () => (await hostStates(h1))['host-2'] === 'unreachable')
    const removed = await cliJson<{ task: { type: string, scope: string, entity_id: string } }>(['hosts', 'remove', 'host-2', '--force', '--server', `${h2.url},${h1.url}`])
    expect(removed.task).toMatchObject({ type: 'remove_host', scope: 'host', entity_id: 'host-2' })
  })
})
