// Property: whatever edits three hosts make to databases while apart, and however their documents trickle between
// them, once they have exchanged everything they agree on every database (heads, views, conflicts, spec errors), and
// the reconciler is only ever handed a spec that is valid after the merge.
// Property: nested maps (postgresql_conf, orchestrator_opts.swarm.extra_labels, node overrides, service config, keyed
// lists of users) that hosts create while apart merge key by key, with a conflict exactly where one key got different
// values; the history's diff shows what GET shows; the next update materializes the merged maps.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as A from '@automerge/automerge'
import { ApiError, type HostRecord, redactSpec, validateSpec } from '@pgmesh/model'
import { ClusterState, SCALAR_STRINGS_FORMAT, toPlain } from '@pgmesh/state'
import fc from 'fast-check'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { Databases, type DatabaseView } from './databases.js'
import { jsonDiff } from './json-diff.js'
import { decodeSpec } from './spec-encoding.js'
import { TaskLogStore } from './task-log.js'
import { Tasks } from './tasks.js'
import { NOTHING_OBSERVED } from './observed-cluster.js'
import { DataKey } from './data-key.js'

/** One cluster's data key for every replica here. */
const DATA_KEY = DataKey.generate()

const logger = pino({ level: 'silent' })
const HOSTS = ['host-1', 'host-2', 'host-3'] as const
const KNOWN: ReadonlySet<string> = new Set(HOSTS)
const NODES = ['n1', 'n2', 'n3', 'n4'] as const
const USERS = ['admin', 'app'] as const
/** Every password the test writes starts with this, so a leak into a view is easy to spot. */
const SECRET = 'secret-'

interface Replica { hostId: string, state: ClusterState, tasks: Tasks, databases: Databases }

type Spec = Record<string, unknown> & {
  nodes: Array<Record<string, unknown> & { name: string, host_ids: string[] }>
  database_users?: Array<Record<string, unknown> & { username: string }>
  postgresql_conf?: Record<string, unknown>
}

type Op =
  | { kind: 'conf', r: number, db: string, key: string, value: string | undefined }
  | { kind: 'nested', r: number, db: string, map: number, key: number, value: string | undefined }
  | { kind: 'port', r: number, db: string, node: string, port: number | undefined }
  | { kind: 'addNode', r: number, db: string, node: string, hosts: string[], port: number | undefined }
  | { kind: 'removeNode', r: number, db: string, node: string }
  | { kind: 'password', r: number, db: string, user: string, password: string }
  | { kind: 'attributes', r: number, db: string, user: string, attributes: string[] }
  | { kind: 'addUser', r: number, db: string, user: string, password: string, owner: boolean }
  | { kind: 'removeUser', r: number, db: string, user: string }
  | { kind: 'delete', r: number, db: string }
  | { kind: 'create', r: number, db: string, host: string, port: number | undefined, withUser: boolean }
  | { kind: 'settle', r: number }
  | { kind: 'upgrade', r: number, host: string }
  /** Sends `count` of the changes `to` lacks (all when undefined), oldest first. */
  | { kind: 'sync', from: number, to: number, count: number | undefined }

const replica = fc.integer({ min: 0, max: 2 })
/** db1 exists from the start; db2 only once some replica creates it. */
const db = fc.oneof({ arbitrary: fc.constant('db1'), weight: 3 }, { arbitrary: fc.constant('db2'), weight: 1 })
const node = fc.constantFrom(...NODES)
const user = fc.constantFrom(...USERS)
const port = fc.option(fc.constantFrom(5432, 5433, 6432), { nil: undefined })
const password = fc.integer({ min: 0, max: 999 }).map(n => `${SECRET}${n}`)

/**
 * Maps of the spec that a database may not have yet, so two hosts can create them at once; a path names nodes and
 * services by their key, as the document stores them. Each with the keys a test sets in it.
 */
const NESTED_MAPS: ReadonlyArray<{ path: readonly string[], keys: readonly string[] }> = [
  { path: ['postgresql_conf'], keys: ['work_mem', 'max_connections', 'shared_buffers'] },
  { path: ['orchestrator_opts', 'swarm'], keys: ['image'] },
  { path: ['orchestrator_opts', 'swarm', 'extra_labels'], keys: ['team', 'tier'] },
  { path: ['nodes', 'n1', 'postgresql_conf'], keys: ['work_mem', 'max_connections'] },
  { path: ['nodes', 'n2', 'orchestrator_opts', 'swarm', 'extra_labels'], keys: ['team', 'tier'] },
  { path: ['services', 'mcp', 'config', 'tuning', 'retrieval'], keys: ['top_k', 'model'] }
]
const nestedMap = fc.integer({ min: 0, max: NESTED_MAPS.length - 1 })
const nestedKey = fc.integer({ min: 0, max: 2 })
const nestedValue = fc.constantFrom('v1', 'v2', 'v3')

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('nested' as const), r: replica, db, map: nestedMap, key: nestedKey, value: fc.option(nestedValue, { nil: undefined }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('conf' as const), r: replica, db, key: fc.constantFrom('work_mem', 'max_connections', 'shared_preload_libraries'), value: fc.option(fc.constantFrom('4MB', '100', 'spock', 'pg_stat_statements'), { nil: undefined }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('port' as const), r: replica, db, node, port }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('addNode' as const), r: replica, db, node, hosts: fc.subarray([...HOSTS], { minLength: 1 }), port }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('removeNode' as const), r: replica, db, node }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('password' as const), r: replica, db, user, password }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('attributes' as const), r: replica, db, user, attributes: fc.subarray(['LOGIN', 'CREATEDB', 'NOLOGIN', 'BOGUS']) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('addUser' as const), r: replica, db, user, password, owner: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('removeUser' as const), r: replica, db, user }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), r: replica, db }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('create' as const), r: replica, db, host: fc.constantFrom(...HOSTS), port, withUser: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('settle' as const), r: replica }), weight: 1 },
  // A host's pgmesh upgraded to read scalar strings: once a replica sees all three upgraded, it writes strings as
  // scalars, so histories mix text and scalar values of the same keys.
  { arbitrary: fc.record({ kind: fc.constant('upgrade' as const), r: replica, host: fc.constantFrom(...HOSTS) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('sync' as const), from: replica, to: replica, count: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }) }), weight: 4 }
)

/** Paths of `ImmutableString` objects left in a document handed to readers (there must be none). */
function scalarObjects (value: unknown, path = ''): string[] {
  if (value instanceof A.ImmutableString) return [path]
  if (typeof value !== 'object' || value === null) return []
  return Object.entries(value).flatMap(([k, v]) => scalarObjects(v, `${path}/${k}`))
}

function hostRecord (id: string, upgraded: readonly string[]): HostRecord {
  return {
    // One machine each: hosts sharing 127.0.0.1 would refuse one port on two of them (port-claims.ts).
    id, peer_id: `peer-${id}`, peer_addresses: [], client_addresses: [`10.0.0.${id.replace(/\D/g, '')}`], api_url: `http://${id}:3000`,
    orchestrator: 'process', data_dir: `/data/${id}`, cpus: 1, memory: 1024, joined_at: '2026-01-01T00:00:00Z',
    ...(upgraded.includes(id) ? { document_format: SCALAR_STRINGS_FORMAT } : {})
  }
}

function baseSpec (): Spec {
  return {
    database_name: 'app',
    nodes: [{ name: 'n1', host_ids: ['host-1'], port: 5432 }, { name: 'n2', host_ids: ['host-2'], port: 5432 }],
    database_users: [{ username: 'admin', password: `${SECRET}base`, db_owner: true, attributes: ['LOGIN'] }],
    postgresql_conf: { work_mem: '4MB' }
  }
}

/** The map at a NESTED_MAPS path in a decoded spec; made (with its parents) when `create`, unless its node or service is missing. */
function nestedMapIn (spec: Record<string, unknown>, path: readonly string[], create: boolean): Record<string, unknown> | undefined {
  let current: Record<string, unknown> = spec
  for (let i = 0; i < path.length; i++) {
    const segment = path[i] as string
    if (segment === 'nodes' || segment === 'services') {
      const idField = segment === 'nodes' ? 'name' : 'service_id'
      const name = path[++i]
      const item = (current[segment] as Array<Record<string, unknown>> | undefined)?.find(x => x[idField] === name)
      if (item === undefined) return undefined
      current = item
      continue
    }
    if (current[segment] === undefined) {
      if (!create) return undefined
      current[segment] = {}
    }
    current = current[segment] as Record<string, unknown>
  }
  return current
}

/** Sets (or, with undefined, removes) one key of a nested map, as a client editing the spec it just read would. */
function setNested (spec: Record<string, unknown>, map: number, key: number, value: string | undefined): void {
  const { path, keys } = NESTED_MAPS[map] as (typeof NESTED_MAPS)[number]
  const name = keys[key % keys.length] as string
  const target = nestedMapIn(spec, path, value !== undefined)
  if (target === undefined) return
  if (value === undefined) delete target[name]
  else target[name] = value
}

/** The field path GET's conflicts use for a key of a nested map: nodes and services by name in brackets. */
function conflictPath (path: readonly string[], key: string): string {
  const out: string[] = ['spec']
  for (let i = 0; i < path.length; i++) {
    if (path[i] === 'nodes' || path[i] === 'services') out.push(`${path[i] ?? ''}[${path[++i] ?? ''}]`)
    else out.push(path[i] as string)
  }
  return [...out, key].join('.')
}

async function openReplica (dir: string, hostId: string): Promise<Replica> {
  const state = await ClusterState.open({ dir: join(dir, hostId, 'state'), hostId, logger })
  const tasks = new Tasks(hostId, state, new TaskLogStore(join(dir, hostId, 'tasks'), hostId), async () => [])
  const databases = new Databases({
    hostId, state, tasks, knownHostIds: () => KNOWN, observed: () => NOTHING_OBSERVED, defaultPostgresVersion: '15.18', dataKey: () => DATA_KEY
  })
  return { hostId, state, tasks, databases }
}

/** Applies the changes `to` lacks from `from` (at most `count` of them, in causal order) through applyRemote. */
function sync (from: Replica, to: Replica, count: number | undefined): void {
  if (from === to) return
  if (count === undefined) {
    // A whole-document exchange, as a joining host gets it.
    const bytes = A.save(from.state.automergeDoc)
    to.state.applyRemote(from.hostId, doc => [A.merge(doc, A.load(bytes)), undefined])
    return
  }
  const have = new Set(to.state.changes().map(c => c.hash))
  // getAllChanges lists a change after its dependencies, so any prefix of what is missing is causally complete.
  const missing = A.getAllChanges(from.state.automergeDoc).filter(c => !have.has(A.decodeChange(c).hash))
  if (missing.length === 0) return
  // With the patch callback, as the replicator calls it: caches then read the changed paths from these patches.
  to.state.applyRemote(from.hostId, (doc, options) => [A.applyChanges(doc, missing.slice(0, count), options)[0], undefined])
  expect(A.getMissingDeps(to.state.automergeDoc, [])).toEqual([])
}

function sameHeads (replicas: Replica[]): boolean {
  const heads = replicas.map(r => [...r.state.heads()].sort().join(','))
  return heads.every(h => h === heads[0])
}

function syncAll (replicas: Replica[]): void {
  for (let round = 0; round < 5 && !sameHeads(replicas); round++) {
    for (const a of replicas) for (const b of replicas) sync(a, b, round % 2 === 0 ? undefined : 1000)
  }
}

/** The edit an op makes to the spec a client just read (GET → edit → POST, as the API's users do). */
function edit (spec: Spec, op: Op): Spec {
  const s = structuredClone(spec)
  const findUser = (name: string): Record<string, unknown> | undefined => s.database_users?.find(u => u.username === name)
  switch (op.kind) {
    case 'nested':
      setNested(s, op.map, op.key, op.value)
      break
    case 'conf': {
      const conf = { ...(s.postgresql_conf ?? {}) }
      if (op.value === undefined) delete conf[op.key]
      else conf[op.key] = op.value
      s.postgresql_conf = conf
      break
    }
    case 'port': {
      const n = s.nodes.find(x => x.name === op.node)
      if (n !== undefined) {
        if (op.port === undefined) delete n.port
        else n.port = op.port
      }
      break
    }
    case 'addNode': {
      const existing = s.nodes.find(x => x.name === op.node)
      const next = { name: op.node, host_ids: op.hosts, ...(op.port === undefined ? {} : { port: op.port }) }
      if (existing === undefined) s.nodes.push(next)
      else Object.assign(existing, next)
      break
    }
    case 'removeNode':
      s.nodes = s.nodes.filter(x => x.name !== op.node)
      break
    case 'password': {
      const u = findUser(op.user)
      if (u !== undefined) u.password = op.password
      break
    }
    case 'attributes': {
      const u = findUser(op.user)
      if (u !== undefined) u.attributes = op.attributes
      break
    }
    case 'addUser':
      if (findUser(op.user) === undefined) {
        s.database_users = [...(s.database_users ?? []), { username: op.user, password: op.password, db_owner: op.owner, attributes: ['LOGIN'] }]
      }
      break
    case 'removeUser':
      s.database_users = (s.database_users ?? []).filter(u => u.username !== op.user)
      break
    default:
      break
  }
  return s
}

async function apply (replicas: Replica[], op: Op): Promise<void> {
  if (op.kind === 'sync') {
    sync(replicas[op.from] as Replica, replicas[op.to] as Replica, op.count)
    return
  }
  const r = replicas[op.r] as Replica
  try {
    switch (op.kind) {
      case 'settle':
        await r.tasks.settleSuperseded()
        return
      case 'upgrade':
        await r.state.change({ op: 'host.update', entity: op.host }, d => { const host = d.hosts[op.host]; if (host !== undefined) host.document_format = SCALAR_STRINGS_FORMAT })
        return
      case 'delete':
        await r.databases.delete(op.db)
        return
      case 'create':
        await r.databases.create({
          id: op.db,
          spec: {
            database_name: `name-${op.db}`,
            nodes: [{ name: 'n1', host_ids: [op.host], ...(op.port === undefined ? {} : { port: op.port }) }],
            ...(op.withUser ? { database_users: [{ username: 'app', password: `${SECRET}create`, db_owner: true }] } : {})
          }
        })
        return
      default: {
        const current = r.databases.get(op.db).spec as Spec
        await r.databases.update(op.db, { spec: edit(current, op) })
      }
    }
  } catch (err) {
    // not_found, invalid_input, database_not_modifiable, database_already_exists: refusals, not failures.
    if (err instanceof ApiError) return
    throw err
  }
}

/** The same replica's databases with nothing cached yet. */
function uncached (r: Replica): Replica {
  const databases = new Databases({
    hostId: r.hostId, state: r.state, tasks: r.tasks, knownHostIds: () => KNOWN, observed: () => NOTHING_OBSERVED, defaultPostgresVersion: '15.18', dataKey: () => DATA_KEY
  })
  return { ...r, databases }
}

function views (r: Replica): DatabaseView[] {
  return Object.keys(r.state.doc.databases ?? {}).sort().map(id => r.databases.get(id))
}

/** `upgraded`: the hosts that read scalar strings from the start (all of them: every string written is a scalar). */
async function withReplicas (run: (replicas: Replica[]) => Promise<void>, specs: Record<string, Record<string, unknown>> = { db1: baseSpec() }, upgraded: readonly string[] = HOSTS): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'pgmesh-merge-prop-'))
  const replicas: Replica[] = []
  try {
    for (const h of HOSTS) replicas.push(await openReplica(dir, h))
    const [first, ...rest] = replicas as [Replica, Replica, Replica]
    await first.state.initialize('c1')
    await first.state.change({ op: 'host.join' }, d => {
      for (const h of HOSTS) d.hosts[h] = hostRecord(h, upgraded)
    })
    for (const [id, spec] of Object.entries(specs)) await first.databases.create({ id, spec })
    const genesis = A.save(first.state.automergeDoc)
    for (const r of rest) r.state.applyRemote(first.hostId, doc => [A.loadIncremental(doc, genesis), undefined])
    await run(replicas)
  } finally {
    for (const r of replicas) await r.state.close()
    await rm(dir, { recursive: true, force: true })
  }
}

describe('databases merged across three replicas', () => {
  it('converge to the same views, and hand the reconciler only valid specs', async () => {
    await fc.assert(
      // Some hosts start on a pgmesh that writes strings as text; `upgrade` ops move them on.
      fc.asyncProperty(fc.subarray([...HOSTS]), fc.array(opArb, { minLength: 5, maxLength: 40 }), async (upgraded, ops) => {
        await withReplicas(async replicas => {
          expect(sameHeads(replicas)).toBe(true)
          for (const op of ops) {
            await apply(replicas, op)
            // Views come from a cache invalidated by document patches: it must always equal a fresh build.
            for (const r of replicas) expect(views(r)).toEqual(views(uncached(r)))
            // And the document readers get holds only plain strings, however the patches of a sync were ordered.
            for (const r of replicas) expect(scalarObjects(r.state.doc)).toEqual([])
          }
          syncAll(replicas)

          // (1) one document everywhere.
          expect(sameHeads(replicas)).toBe(true)

          // (2) every host shows every database the same way: spec, state, conflicts, spec_errors.
          const [first, ...rest] = replicas as [Replica, Replica, Replica]
          const expected = views(first)
          const expectedList = first.databases.list().databases
          for (const r of rest) {
            expect(views(r)).toEqual(expected)
            expect(r.databases.list().databases).toEqual(expectedList)
            expect(r.databases.desired()).toEqual(uncached(r).databases.desired())
          }

          for (const r of replicas) {
            // (3) the reconciler gets a spec only when it is valid after the merge; otherwise GET says why.
            for (const d of r.databases.desired()) {
              const view = r.databases.get(d.id)
              if (d.deleted) {
                expect(view.state).toBe('deleting')
                expect(view.spec_errors).toBeUndefined()
                continue
              }
              if (d.spec !== undefined) {
                const check = validateSpec(d.spec, { knownHostIds: KNOWN, databaseId: d.id })
                expect(check.ok, JSON.stringify(check)).toBe(true)
                expect(view.spec_errors).toBeUndefined()
                expect(view.state).not.toBe('failed')
              } else {
                expect(view.spec_errors?.length ?? 0).toBeGreaterThan(0)
                expect(view.state).toBe('failed')
              }
            }
            // (4) secrets are write-only: no view, conflicts included, shows a password.
            expect(JSON.stringify(views(r))).not.toContain(SECRET)
          }
        }, undefined, upgraded)
      }),
      {
        seed: 42,
        numRuns: 40,
        // Found by this property (seed 7): two hosts add the same user while apart, and GET showed the conflicting user
        // objects with their passwords.
        examples: [[[], [
          { kind: 'addUser', r: 0, db: 'db1', user: 'app', password: `${SECRET}0`, owner: false },
          { kind: 'addUser', r: 1, db: 'db1', user: 'app', password: `${SECRET}1`, owner: false },
          { kind: 'sync', from: 0, to: 1, count: undefined }
        ]]]
      }
    )
  })
})

/** A spec with none of the nested maps (nor users) yet, and one whose service config has none of them. */
function bareSpecs (): Record<string, Record<string, unknown>> {
  const nodes = (port: number): unknown[] => [{ name: 'n1', host_ids: ['host-1'], port }, { name: 'n2', host_ids: ['host-2'], port }]
  return {
    bare: { database_name: 'app', nodes: nodes(5432) },
    svc: {
      database_name: 'app',
      nodes: nodes(5442),
      database_users: [{ username: 'svc', password: `${SECRET}svc` }],
      services: [{ service_id: 'mcp', service_type: 'mcp', version: '1.0.0', host_ids: ['host-1'], connect_as: 'svc', config: { llm_provider: 'anthropic', anthropic_api_key: `${SECRET}key` } }]
    }
  }
}

type Write =
  | { kind: 'nested', r: number, db: 'bare' | 'svc', map: number, key: number, value: string | undefined }
  | { kind: 'user', r: number, username: 'alice' | 'bob', createdb: boolean }
  | { kind: 'repository', r: number, path: string }

const writeArb: fc.Arbitrary<Write> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('nested' as const), r: replica, db: fc.constantFrom('bare' as const, 'svc' as const), map: nestedMap, key: nestedKey, value: fc.option(nestedValue, { nil: undefined, freq: 5 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('user' as const), r: replica, username: fc.constantFrom('alice' as const, 'bob' as const), createdb: fc.boolean() }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('repository' as const), r: replica, path: fc.constantFrom('/backups/a', '/backups/b') }), weight: 1 }
)

/** What one replica last wrote at each leaf (undefined: removed), and the order it added users in. */
interface Written { leaves: Map<string, unknown>, users: string[] }

/** One write through the API (GET, edit, POST), noted in what that replica wrote. */
async function write (r: Replica, w: Write, written: Written): Promise<void> {
  const id = w.kind === 'nested' ? w.db : 'bare'
  const spec = structuredClone(r.databases.get(id).spec) as Record<string, unknown>
  if (w.kind === 'nested') {
    const { path, keys } = NESTED_MAPS[w.map] as (typeof NESTED_MAPS)[number]
    setNested(spec, w.map, w.key, w.value)
    // No such map (nothing to remove), or no such node or service: nothing written.
    if (nestedMapIn(spec, path, false) === undefined) return
    written.leaves.set(`${id}:${conflictPath(path, keys[w.key % keys.length] as string)}`, w.value)
  } else if (w.kind === 'user') {
    if (written.users.includes(w.username)) return
    const users = (spec.database_users ?? []) as Array<Record<string, unknown>>
    const attributes = w.createdb ? ['LOGIN', 'CREATEDB'] : ['LOGIN']
    spec.database_users = [...users, { username: w.username, password: `${SECRET}${r.hostId}`, attributes }]
    written.users.push(w.username)
    written.leaves.set(`bare:spec.database_users[${w.username}].attributes`, attributes)
    written.leaves.set(`bare:spec.database_users[${w.username}].password`, r.hostId)
  } else {
    spec.backup_config = { repositories: [{ type: 'posix', base_path: w.path }] }
    written.leaves.set('bare:spec.backup_config.repositories', w.path)
  }
  await r.databases.update(id, { spec })
}

/** Whether two replicas added users both added in different orders: the one conflict a keyed list's order can have. */
function ordersDisagree (orders: string[][]): boolean {
  return orders.some((x, i) => orders.slice(i + 1).some(y => {
    const shared = x.filter(u => y.includes(u))
    return shared.join() !== y.filter(u => x.includes(u)).join()
  }))
}

describe('nested maps created while apart', () => {
  it('merge key by key, conflict exactly where one key got different values, and are materialized by the next update', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(writeArb, { minLength: 1, maxLength: 14 }), async writes => {
        await withReplicas(async replicas => {
          const [first] = replicas as [Replica]
          const before = Object.fromEntries(['bare', 'svc'].map(id => [id, { version: first.databases.history(id).at(-1)?.version, view: first.databases.get(id) }]))
          const written: Written[] = replicas.map(() => ({ leaves: new Map(), users: [] }))
          // Every replica writes cut off from the others; then they exchange everything.
          for (const w of writes) await write(replicas[w.r] as Replica, w, written[w.r] as Written)
          syncAll(replicas)
          expect(sameHeads(replicas)).toBe(true)

          const expected = new Map<string, Set<string>>()
          for (const id of ['bare', 'svc']) expected.set(id, new Set())
          const leaves = new Set(written.flatMap(w => [...w.leaves.keys()]))
          for (const leaf of leaves) {
            const values = written.map(w => w.leaves.get(leaf)).filter(v => v !== undefined)
            if (new Set(values.map(v => JSON.stringify(v))).size > 1) {
              const [id = '', path = ''] = leaf.split(':')
              expected.get(id)?.add(path)
            }
          }
          if (ordersDisagree(written.map(w => w.users))) expected.get('bare')?.add('spec.database_users')

          for (const r of replicas) {
            for (const id of ['bare', 'svc']) {
              const view = r.databases.get(id)
              // (1) a conflict only where one leaf got different values from different replicas.
              expect((view.conflicts ?? []).map(c => c.path).sort(), `${id} on ${r.hostId}`).toEqual([...(expected.get(id) ?? [])].sort())
              expect(view.spec_errors).toBeUndefined()
              // (2) every key any replica wrote and none removed is there, with one of the values written.
              for (const leaf of leaves) {
                const [leafId, path = ''] = leaf.split(':')
                if (leafId !== id || path.endsWith('.password')) continue
                const values = written.map(w => w.leaves.get(leaf)).filter(v => v !== undefined)
                const shown = valueAt(view.spec, path)
                if (values.length === 0) expect(shown, path).toBeUndefined()
                else if (path.endsWith('repositories')) expect(values).toContain((shown as Array<{ base_path: string }>)[0]?.base_path)
                else expect(values, path).toContainEqual(shown)
              }
              for (const user of new Set(written.flatMap(w => w.users))) {
                if (id === 'bare') expect((view.spec.database_users as Array<{ username: string }>).map(u => u.username)).toContain(user)
              }
              // (3) the history's diff from before the partition says what GET shows, and that secrets changed (GET
              // shows none), as a hash of their ciphertext, never the value.
              const all = r.databases.diff(id, before[id]?.version, undefined).filter(e => e.path.startsWith('spec'))
              const diff = all.filter(e => !isMarker(e.before) && !isMarker(e.after))
                .map(e => ({ ...e, ...('before' in e ? { before: withoutMarkers(e.before) } : {}), ...('after' in e ? { after: withoutMarkers(e.after) } : {}) }))
              expect(JSON.stringify(all)).not.toContain(SECRET)
              expect(diff).toEqual(jsonDiff(before[id]?.view.spec, view.spec, 'spec'))
            }
            expect(JSON.stringify(views(r))).not.toContain(SECRET)
          }

          // (4) the next update (any, here one that changes nothing) writes the merged maps as single maps: a plain
          // read of the document now shows all of it, nothing is lost, and no conflict is left.
          const merged = Object.fromEntries(['bare', 'svc'].map(id => [id, first.databases.get(id)]))
          for (const id of ['bare', 'svc']) await first.databases.update(id, { spec: merged[id]?.spec })
          syncAll(replicas)
          for (const r of replicas) {
            for (const id of ['bare', 'svc']) {
              const view = r.databases.get(id)
              expect(view.spec).toEqual(merged[id]?.spec)
              expect(view.conflicts).toBeUndefined()
              const plain = toPlain<Record<string, unknown>>((r.state.doc.databases as Record<string, { spec: unknown }>)[id]?.spec)
              expect(redactSpec(decodeSpec(plain) as never)).toEqual(view.spec)
            }
          }
        }, bareSpecs())
      }),
      {
        seed: 17,
        numRuns: 30,
        // Issue 17 §5: two hosts each add a different postgresql_conf key to a database that had none.
        examples: [[[
          { kind: 'nested', r: 0, db: 'bare', map: 0, key: 0, value: 'v1' },
          { kind: 'nested', r: 1, db: 'bare', map: 0, key: 1, value: 'v2' }
        ]]]
      }
    )
  })
})

/** The value at a conflict-style path (`spec.nodes[n1].postgresql_conf.work_mem`) of a decoded spec. */
function valueAt (spec: Record<string, unknown>, path: string): unknown {
  let current: unknown = { spec }
  for (const segment of path.split('.')) {
    const keyed = /^(\w+)\[(.+)\]$/.exec(segment)
    if (current === undefined || current === null || typeof current !== 'object') return undefined
    if (keyed === null) {
      current = (current as Record<string, unknown>)[segment]
      continue
    }
    const [, list = '', name] = keyed
    const items = (current as Record<string, unknown>)[list] as Array<Record<string, unknown>> | undefined
    current = items?.find(item => item.name === name || item.service_id === name || item.username === name)
  }
  return current
}

/** What a diff shows for a secret (a hash of its ciphertext); GET shows none. */
function isMarker (v: unknown): boolean {
  return typeof v === 'string' && /^\(secret( [0-9a-f]{8})?\)$/.test(v)
}

/** A diff's value with its secret markers taken out, as GET would show it. */
function withoutMarkers (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutMarkers)
  if (typeof v !== 'object' || v === null) return v
  return Object.fromEntries(Object.entries(v).filter(([, x]) => !isMarker(x)).map(([k, x]) => [k, withoutMarkers(x)]))
}
