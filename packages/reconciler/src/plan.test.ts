import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ObservedInstance } from '@pgmesh/model'
import { type DatabaseSpec, instanceId } from '@pgmesh/model'
import { describe, expect, it } from 'vitest'
import { hashOf, plan } from './plan.js'
import { describeWait, rollOrder, rollsByHandOver, rollWait } from './roll.js'
import type { Action, AppliedInstance, Desired, DesiredDatabase, LocalInstance, Observed } from './types.js'

// ---------------------------------------------------------------------------------------------------------------
// Golden files: the full action list of each scenario is kept in __golden__/<scenario>.json. They are the spec of
// the planner: regenerate with UPDATE_GOLDEN=1 only for an intended change, and review the diff by hand.
// ---------------------------------------------------------------------------------------------------------------

const GOLDEN_DIR = fileURLToPath(new URL('./__golden__/', import.meta.url))
const goldenNames = new Set<string>()

function expectGolden (scenario: string, actions: Action[]): void {
  if (goldenNames.has(scenario)) throw new Error(`golden scenario ${scenario} is used twice`)
  goldenNames.add(scenario)
  const file = join(GOLDEN_DIR, `${scenario}.json`)
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(GOLDEN_DIR, { recursive: true })
    writeFileSync(file, `${JSON.stringify(actions, null, 2)}\n`)
    return
  }
  if (!existsSync(file)) {
    throw new Error(`golden file ${file} is missing: run \`UPDATE_GOLDEN=1 npx vitest run packages/reconciler\`, then review it by hand`)
  }
  const expected: unknown = JSON.parse(readFileSync(file, 'utf8'))
  expect(actions, `plan() differs from ${file} (if intended: UPDATE_GOLDEN=1, then review the diff)`).toEqual(expected)
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------------

type Hosts = Desired['hosts']

const HOSTS: Hosts = [
  { id: 'host-1', addresses: ['10.0.0.1'] },
  { id: 'host-2', addresses: ['10.0.0.2'] },
  { id: 'host-3', addresses: ['10.0.0.3'] }
]
/** A development cluster: three hosts on one machine. */
const LOOPBACK_HOSTS: Hosts = HOSTS.map(h => ({ id: h.id, addresses: ['127.0.0.1'] }))

const UPDATED_AT = '2025-06-01T12:00:00Z'

const storefront: DatabaseSpec = {
  database_name: 'storefront',
  postgres_version: '17.6',
  spock_version: '5',
  port: 5432,
  nodes: [
    { name: 'n1', host_ids: ['host-1'], postgresql_conf: { work_mem: '16MB' }, pg_hba_conf: ['host storefront admin 10.0.0.1/32 scram-sha-256'] },
    { name: 'n2', host_ids: ['host-2'] },
    { name: 'n3', host_ids: ['host-3'] }
  ],
  database_users: [
    { username: 'admin', password: 'storefront-admin-secret', db_owner: true, attributes: ['LOGIN', 'SUPERUSER'] },
    { username: 'app', password: 'storefront-app-secret', attributes: ['LOGIN'], roles: ['pg_read_all_data'] }
  ],
  postgresql_conf: { max_connections: 200, shared_buffers: '512MB', 'pg_stat_statements.track': 'all' },
  pg_hba_conf: ['host storefront app 10.0.0.0/24 scram-sha-256'],
  scripts: { post_database_create: ['CREATE EXTENSION IF NOT EXISTS pg_stat_statements'] }
}

/** storefront without n3. */
const storefrontWithoutN3: DatabaseSpec = { ...storefront, nodes: storefront.nodes.filter(n => n.name !== 'n3') }

/** storefront with a fourth node on host-2 (beside n2, so on its own port) that copies from n1. */
const storefrontWithN4: DatabaseSpec = {
  ...storefront,
  nodes: [...storefront.nodes, { name: 'n4', host_ids: ['host-2'], port: 5433, source_node: 'n1' }]
}

/** n1 has a streaming replica on host-2. */
const ledger: DatabaseSpec = {
  database_name: 'ledger',
  postgres_version: '17.6',
  spock_version: '5',
  port: 5433,
  nodes: [
    { name: 'n1', host_ids: ['host-1', 'host-2'] },
    { name: 'n2', host_ids: ['host-3'] }
  ],
  database_users: [{ username: 'ledger_owner', password: 'ledger-owner-secret', db_owner: true, attributes: ['LOGIN'] }],
  postgresql_conf: { max_wal_senders: 16, hot_standby_feedback: true }
}

/** Development: random ports (0), every host on 127.0.0.1. */
const devStorefront: DatabaseSpec = {
  database_name: 'storefront',
  postgres_version: '17.6',
  port: 0,
  nodes: [{ name: 'n1', host_ids: ['host-1'] }, { name: 'n2', host_ids: ['host-2'] }, { name: 'n3', host_ids: ['host-3'] }],
  database_users: [{ username: 'admin', password: 'dev-admin-secret', db_owner: true, attributes: ['LOGIN'] }],
  postgresql_conf: { log_min_duration_statement: 250 }
}

const sandbox: DatabaseSpec = {
  database_name: 'sandbox',
  postgres_version: '16.10',
  port: 0,
  nodes: [{ name: 'n1', host_ids: ['host-1'] }],
  database_users: [{ username: 'dev', password: 'sandbox-dev-secret', db_owner: true, attributes: ['LOGIN', 'CREATEDB'] }],
  postgresql_conf: { fsync: false }
}

function database (id: string, spec: DatabaseSpec | undefined, patch: Partial<DesiredDatabase> = {}): DesiredDatabase {
  return { id, generation: 1, deleted: false, paused: false, spec, sources: {}, ...patch }
}

interface Cluster { hosts: Hosts, databases: DesiredDatabase[] }

function desiredFor (cluster: Cluster, hostId: string): Desired {
  return { hostId, hosts: cluster.hosts, databases: cluster.databases }
}

const id = instanceId

function addressOf (hosts: Hosts, hostId: string): string {
  const address = hosts.find(h => h.id === hostId)?.addresses[0]
  if (address === undefined) throw new Error(`no address for ${hostId}`)
  return address
}

/** One instance as a peer's heartbeat reports it. */
function seen (databaseId: string, nodeName: string, hostId: string, patch: Partial<ObservedInstance> = {}): ObservedInstance {
  return {
    id: id(databaseId, nodeName, hostId), database_id: databaseId, node_name: nodeName, host_id: hostId, state: 'available', role: 'primary',
    port: 5432, addresses: [addressOf(HOSTS, hostId)], postgres_version: '17.6', generation: 1, updated_at: UPDATED_AT, ...patch
  }
}

// ---------------------------------------------------------------------------------------------------------------
// A tiny simulated cluster: each host's orchestrator instances and applied records, changed the way
// reconciler.ts applies actions, and observed the way its heartbeats report them. Used to build the states the
// scenarios start from, and to check that applying the plan converges.
// ---------------------------------------------------------------------------------------------------------------

interface HostWorld {
  local: LocalInstance[]
  applied: AppliedInstance[]
  /** Providers each local primary subscribes to (what the replication extension would report). */
  subscriptions: Record<string, string[]>
}
type World = Record<string, HostWorld>

function emptyWorld (hosts: Hosts = HOSTS): World {
  return Object.fromEntries(hosts.map(h => [h.id, { local: [], applied: [], subscriptions: {} }]))
}

function hostOf (world: World, hostId: string): HostWorld {
  const host = world[hostId]
  if (host === undefined) throw new Error(`no host ${hostId} in the world`)
  return host
}

function upsert<T extends { instanceId: string }> (list: T[], item: T): void {
  const index = list.findIndex(i => i.instanceId === item.instanceId)
  if (index === -1) list.push(item)
  else list[index] = item
}

/** Applies actions as reconciler.ts does (successfully), returning a new world. */
function applyActions (world: World, hostId: string, actions: Action[]): World {
  const next = structuredClone(world)
  const host = hostOf(next, hostId)
  for (const action of actions) {
    switch (action.kind) {
      case 'ensure-instance': {
        const existing = host.local.find(i => i.instanceId === action.instanceId)
        // Port 0: a free port chosen once and kept (deterministic here: 5450 for host-1's first instance, …).
        const port = action.spec.port !== 0 ? action.spec.port : existing?.port ?? 5440 + 10 * Number(hostId.slice('host-'.length)) + host.local.length
        // Every deferred change of a running server's spec is taken to need a restart (the worst case); a pending
        // one stays pending until an ensure without deferRestart.
        const previousHash = host.applied.find(a => a.instanceId === action.instanceId)?.specHash
        const pendingRestart = action.spec.deferRestart === true && existing?.state === 'running' &&
          (previousHash !== action.specHash || existing.pendingRestart === true)
        upsert(host.local, {
          instanceId: action.instanceId, state: 'running', role: existing?.role ?? (action.spec.primary === undefined ? 'primary' : 'replica'),
          port, postgresVersion: action.spec.postgresVersion ?? '17.6', ...(pendingRestart ? { pendingRestart } : {})
        })
        const previous = host.applied.find(a => a.instanceId === action.instanceId)
        const replicationHash = previous?.specHash === action.specHash ? previous.replicationHash : undefined
        upsert(host.applied, {
          instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash,
          ...(replicationHash === undefined ? {} : { replicationHash })
        })
        break
      }
      case 'ensure-replication': {
        const record = host.applied.find(a => a.instanceId === action.instanceId)
        if (record !== undefined) record.replicationHash = action.hash
        // Subscriptions to nodes gone from the spec are dropped; others are only ever added.
        const kept = (host.subscriptions[action.instanceId] ?? []).filter(p => action.nodes.includes(p))
        host.subscriptions[action.instanceId] = [...new Set([...kept, ...action.providers.map(p => p.nodeName)])].sort()
        break
      }
      case 'promote-instance': {
        const local = host.local.find(i => i.instanceId === action.instanceId)
        if (local !== undefined) local.role = 'primary'
        const record = host.applied.find(a => a.instanceId === action.instanceId)
        if (record !== undefined) {
          delete record.replicationHash
          record.role = 'primary'
        }
        break
      }
      case 'rebuild-instance': {
        upsert(host.local, { instanceId: action.instanceId, state: 'running', role: 'replica', port: action.spec.port, postgresVersion: action.spec.postgresVersion ?? '17.6' })
        upsert(host.applied, { instanceId: action.instanceId, databaseId: action.databaseId, nodeName: action.nodeName, generation: action.generation, specHash: action.specHash, role: 'replica' })
        delete host.subscriptions[action.instanceId]
        break
      }
      case 'stop-instance': {
        const local = host.local.find(i => i.instanceId === action.instanceId)
        if (local !== undefined) local.state = 'stopped'
        break
      }
      case 'restart-instance': {
        const record = host.applied.find(a => a.instanceId === action.instanceId)
        if (record !== undefined) record.restarts = action.restarts
        break
      }
      case 'remove-instance': {
        host.local = host.local.filter(i => i.instanceId !== action.instanceId)
        host.applied = host.applied.filter(a => a.instanceId !== action.instanceId)
        delete host.subscriptions[action.instanceId]
        break
      }
    }
  }
  return next
}

/** Every host's instances as their heartbeats report them (Reconciler.observedInstances). */
function observe (world: World, cluster: Cluster): ObservedInstance[] {
  const out: ObservedInstance[] = []
  for (const [hostId, host] of Object.entries(world)) {
    for (const record of host.applied) {
      const local = host.local.find(i => i.instanceId === record.instanceId)
      const generation = cluster.databases.find(d => d.id === record.databaseId)?.generation ?? 0
      let state: ObservedInstance['state']
      if (local === undefined) state = 'unknown'
      else if (local.state === 'stopped') state = 'stopped'
      else if (local.state === 'crashed') state = 'degraded'
      else if (local.state === 'starting' || record.generation < generation) state = 'modifying'
      else state = 'available'
      const subscriptions = host.subscriptions[record.instanceId]
      out.push({
        id: record.instanceId, database_id: record.databaseId, node_name: record.nodeName, host_id: hostId, state,
        ...(local?.role === undefined ? {} : { role: local.role }),
        ...(local === undefined ? {} : { port: local.port, postgres_version: local.postgresVersion, addresses: [addressOf(cluster.hosts, hostId)] }),
        generation: record.generation,
        ...(subscriptions === undefined || local?.role !== 'primary'
          ? {}
          : { subscriptions: subscriptions.map(p => ({ provider_node: p, name: `sub_${p}_${record.nodeName}`, status: 'replicating' })), replication: 'spock' }),
        ...(record.replicationHash === undefined ? {} : { node_ready: true }),
        ...(local?.pendingRestart === true ? { pending_restart: true } : {}),
        updated_at: UPDATED_AT
      })
    }
  }
  return out
}

function observedFor (world: World, cluster: Cluster, hostId: string): Observed {
  const host = hostOf(world, hostId)
  return { local: structuredClone(host.local), applied: structuredClone(host.applied), cluster: observe(world, cluster) }
}

function planFor (world: World, cluster: Cluster, hostId: string): Action[] {
  return plan(desiredFor(cluster, hostId), observedFor(world, cluster, hostId))
}

/** Plans and applies on every host, round after round, until a whole round has nothing to do. */
function converge (world: World, cluster: Cluster, maxRounds = 12): World {
  let current = world
  for (let round = 0; round < maxRounds; round++) {
    let busy = false
    for (const { id: hostId } of cluster.hosts) {
      const actions = planFor(current, cluster, hostId)
      if (actions.length > 0) busy = true
      current = applyActions(current, hostId, actions)
    }
    if (!busy) return current
  }
  throw new Error(`the cluster did not converge in ${maxRounds} rounds`)
}

function step (world: World, cluster: Cluster, hostId: string): World {
  return applyActions(world, hostId, planFor(world, cluster, hostId))
}

function setLocalState (world: World, hostId: string, instance: string, state: LocalInstance['state']): World {
  const next = structuredClone(world)
  const local = hostOf(next, hostId).local.find(i => i.instanceId === instance)
  if (local === undefined) throw new Error(`no local instance ${instance} on ${hostId}`)
  local.state = state
  return next
}

function withInstance (instances: ObservedInstance[], instance: ObservedInstance): ObservedInstance[] {
  return [...instances.filter(i => i.id !== instance.id), instance]
}

function kinds (actions: Action[]): string[] {
  return actions.map(a => `${a.kind} ${a.instanceId}`)
}

function only<K extends Action['kind']> (actions: Action[], kind: K): Extract<Action, { kind: K }> {
  expect(actions).toHaveLength(1)
  const action = actions[0]
  if (action?.kind !== kind) throw new Error(`expected one ${kind}, got ${JSON.stringify(kinds(actions))}`)
  return action as Extract<Action, { kind: K }>
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}

// Shared states, built once through the planner itself.
const three: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront)] }
const threeConverged = converge(emptyWorld(), three)
const both: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger), database('storefront', storefront)] }
const bothConverged = converge(emptyWorld(), both)
const withN4: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithN4, { generation: 2, sources: { n4: 'n1' } })] }
const withN4Converged = converge(threeConverged, withN4)

// ---------------------------------------------------------------------------------------------------------------

describe('plan', () => {
  it('empty cluster: no actions', () => {
    const actions = plan(desiredFor({ hosts: HOSTS, databases: [] }, 'host-1'), { local: [], applied: [], cluster: [] })
    expectGolden('empty-cluster', actions)
    expect(actions).toEqual([])
  })

  describe('a new three-node database', () => {
    it('host-1 ensures only its own instance, n1, as a primary with the database set up', () => {
      const actions = planFor(emptyWorld(), three, 'host-1')
      expectGolden('new-database-host-1', actions)
      const action = only(actions, 'ensure-instance')
      expect(action.instanceId).toBe('storefront-n1-689qacsi')
      expect(action.spec.primary).toBeUndefined()
      expect(action.spec.database?.name).toBe('storefront')
      // Node settings merged over the database's; node hba rules first.
      expect(action.spec.postgresqlConf).toEqual({ max_connections: 200, shared_buffers: '512MB', 'pg_stat_statements.track': 'all', work_mem: '16MB' })
      expect(action.spec.pgHbaConf).toEqual(['host storefront admin 10.0.0.1/32 scram-sha-256', 'host storefront app 10.0.0.0/24 scram-sha-256'])
    })

    it('host-2 and host-3 each ensure theirs, n2 and n3', () => {
      const host2 = planFor(emptyWorld(), three, 'host-2')
      const host3 = planFor(emptyWorld(), three, 'host-3')
      expectGolden('new-database-host-2', host2)
      expect(kinds(host2)).toEqual(['ensure-instance storefront-n2-9ptayhma'])
      expect(kinds(host3)).toEqual(['ensure-instance storefront-n3-ant97dj4'])
    })

    it('the spec hash is the hash of the instance spec and does not depend on what peers are doing', () => {
      const action = only(planFor(emptyWorld(), three, 'host-1'), 'ensure-instance')
      expect(action.specHash).toBe(hashOf(action.spec))
      expect(action.specHash).toMatch(/^[0-9a-f]{16}$/)
      const again = only(planFor(emptyWorld(), three, 'host-1'), 'ensure-instance')
      expect(again).toEqual(action)
      // Peers up and running: the same instance spec, the same hash.
      const busy = observedFor(threeConverged, three, 'host-1')
      const crashed = only(plan(desiredFor(three, 'host-1'), { ...busy, local: busy.local.map(l => ({ ...l, state: 'crashed' as const })) }), 'ensure-instance')
      expect(crashed.specHash).toBe(action.specHash)
      expect(hostOf(threeConverged, 'host-1').applied[0]?.specHash).toBe(action.specHash)
    })

    it('two new databases from host-1: one instance each, in database id order', () => {
      const actions = planFor(emptyWorld(), both, 'host-1')
      expectGolden('two-new-databases-host-1', actions)
      expect(kinds(actions)).toEqual(['ensure-instance ledger-n1-689qacsi', 'ensure-instance storefront-n1-689qacsi'])
    })
  })

  describe('replication of n1 once its instance is applied and running', () => {
    const applied = step(emptyWorld(), three, 'host-1')
    const base = observedFor(applied, three, 'host-1')
    const desired = desiredFor(three, 'host-1')

    it('alone in the cluster: a replication action with no providers', () => {
      const actions = plan(desired, base)
      expectGolden('n1-running-alone', actions)
      const action = only(actions, 'ensure-replication')
      expect(action.node).toEqual({ nodeName: 'n1', dsn: 'host=10.0.0.1 port=5432 dbname=storefront user=pgmesh' })
      expect(action.providers).toEqual([])
      expect(action.nodes).toEqual(['n1', 'n2', 'n3'])
      expect(action.sourceNode).toBeUndefined()
    })

    it('peers observed but not node_ready (or not available): still no providers, the same hash', () => {
      const cluster = [...base.cluster, seen('storefront', 'n2', 'host-2'), seen('storefront', 'n3', 'host-3', { state: 'creating', port: undefined })]
      const actions = plan(desired, { ...base, cluster })
      expectGolden('n1-peers-not-ready', actions)
      expect(only(actions, 'ensure-replication').providers).toEqual([])
      expect(actions).toEqual(plan(desired, base))
    })

    it('n2 available and node_ready, n3 available only: n2 is the one provider', () => {
      const cluster = [...base.cluster, seen('storefront', 'n2', 'host-2', { node_ready: true }), seen('storefront', 'n3', 'host-3')]
      const actions = plan(desired, { ...base, cluster })
      expectGolden('n1-one-peer-ready', actions)
      expect(only(actions, 'ensure-replication').providers).toEqual([{ nodeName: 'n2', dsn: 'host=10.0.0.2 port=5432 dbname=storefront user=pgmesh' }])
      // node_ready but not available (catching up, crashed) is no provider either.
      const modifying = [...base.cluster, seen('storefront', 'n2', 'host-2', { node_ready: true }), seen('storefront', 'n3', 'host-3', { node_ready: true, state: 'modifying' })]
      expect(plan(desired, { ...base, cluster: modifying })).toEqual(actions)
      const degraded = withInstance(modifying, seen('storefront', 'n3', 'host-3', { node_ready: true, state: 'degraded' }))
      expect(plan(desired, { ...base, cluster: degraded })).toEqual(actions)
    })

    it('every peer available and node_ready: both providers, with their observed ports', () => {
      const cluster = [...base.cluster, seen('storefront', 'n2', 'host-2', { node_ready: true }), seen('storefront', 'n3', 'host-3', { node_ready: true, port: 5442 })]
      const actions = plan(desired, { ...base, cluster })
      expectGolden('n1-all-peers-ready', actions)
      expect(only(actions, 'ensure-replication').providers.map(p => p.dsn)).toEqual([
        'host=10.0.0.2 port=5432 dbname=storefront user=pgmesh',
        'host=10.0.0.3 port=5442 dbname=storefront user=pgmesh'
      ])
    })

    it('nothing for a replication already applied with the same membership', () => {
      const cluster = [...base.cluster, seen('storefront', 'n2', 'host-2')]
      const replicated = applyActions(applied, 'host-1', plan(desired, base))
      expect(plan(desired, { ...observedFor(replicated, three, 'host-1'), cluster })).toEqual([])
    })
  })

  describe('everything applied', () => {
    it('no actions on any host of a converged three-node database', () => {
      for (const hostId of ['host-1', 'host-2', 'host-3']) expectGolden(`converged-${hostId}`, planFor(threeConverged, three, hostId))
    })

    it('the converged state is the full mesh', () => {
      expect(observe(threeConverged, three).map(i => [i.node_name, i.state, i.node_ready, i.subscriptions?.map(s => s.provider_node)])).toEqual([
        ['n1', 'available', true, ['n2', 'n3']],
        ['n2', 'available', true, ['n1', 'n3']],
        ['n3', 'available', true, ['n1', 'n2']]
      ])
    })
  })

  describe('generation bump with an identical spec', () => {
    const bumped: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront, { generation: 2 })] }

    it('ensures the instance again, with the same spec hash and the new generation', () => {
      const actions = planFor(threeConverged, bumped, 'host-1')
      expectGolden('generation-bump-host-1', actions)
      const action = only(actions, 'ensure-instance')
      expect(action.generation).toBe(2)
      expect(action.specHash).toBe(hostOf(threeConverged, 'host-1').applied[0]?.specHash)
    })

    it('once every host applied it: nothing, and the replication membership is unchanged', () => {
      const world = converge(threeConverged, bumped)
      for (const hostId of ['host-1', 'host-2', 'host-3']) {
        expect(planFor(world, bumped, hostId)).toEqual([])
        expect(hostOf(world, hostId).applied).toEqual(hostOf(threeConverged, hostId).applied.map(a => ({ ...a, generation: 2 })))
      }
    })
  })

  describe('a change that needs restarts rolls, one instance at a time (roll.ts)', () => {
    const resized: DatabaseSpec = { ...storefront, postgresql_conf: { ...storefront.postgresql_conf, shared_buffers: '1GB' } }
    const rolled: Cluster = { hosts: HOSTS, databases: [database('storefront', resized, { generation: 2 })] }
    const restartsIn = (world: World, hostId: string, actions: Action[]): string[] => actions
      .filter((a): a is Extract<Action, { kind: 'ensure-instance' }> => a.kind === 'ensure-instance' && a.spec.deferRestart !== true)
      .filter(a => hostOf(world, hostId).local.some(l => l.instanceId === a.instanceId && l.state === 'running'))
      .map(a => a.instanceId)

    it('planned at the same moment on every host: n1, first in the roll, restarts; n2 and n3 write the change and wait', () => {
      const passes = Object.fromEntries(['host-1', 'host-2', 'host-3'].map(h => [h, planFor(threeConverged, rolled, h)]))
      expectGolden('rolling-restart-first-pass-host-1', passes['host-1'] ?? [])
      expect(only(passes['host-1'] ?? [], 'ensure-instance').spec.deferRestart).toBeUndefined()
      expect(only(passes['host-2'] ?? [], 'ensure-instance').spec.deferRestart).toBe(true)
      expect(only(passes['host-3'] ?? [], 'ensure-instance').spec.deferRestart).toBe(true)
      // The flag is not part of the spec: the hash is the same either way.
      expect(only(passes['host-2'] ?? [], 'ensure-instance').specHash).toBe(hashOf({ ...only(passes['host-2'] ?? [], 'ensure-instance').spec, deferRestart: undefined }))
    })

    it('a waiting instance restarts once every instance before it settled, and the roll ends with nothing pending', () => {
      // Every host plans from one snapshot, then all apply: the hosts act at the same moment, round after round.
      let world = threeConverged
      const order: string[][] = []
      for (let round = 0; round < 8; round++) {
        const passes = (['host-1', 'host-2', 'host-3']).map(h => [h, planFor(world, rolled, h)] as const)
        order.push(passes.flatMap(([h, actions]) => restartsIn(world, h, actions)))
        for (const [h, actions] of passes) world = applyActions(world, h, actions)
      }
      expect(order.filter(r => r.length > 0)).toEqual([[id('storefront', 'n1', 'host-1')], [id('storefront', 'n2', 'host-2')], [id('storefront', 'n3', 'host-3')]])
      for (const hostId of ['host-1', 'host-2', 'host-3']) {
        expect(hostOf(world, hostId).local.every(l => l.pendingRestart !== true)).toBe(true)
        expect(planFor(world, rolled, hostId)).toEqual([])
      }
    })

    it('a host that stops reporting holds the roll at its instance: the next one waits and says why', () => {
      const afterFirst = step(step(step(threeConverged, rolled, 'host-2'), rolled, 'host-3'), rolled, 'host-1')
      const observed = observedFor(afterFirst, rolled, 'host-3')
      expect(observed.local[0]?.pendingRestart).toBe(true)
      // host-2 is cut off: its instance n2 is not in what host-3 sees.
      const cutOff = { ...observed, cluster: observed.cluster.filter(i => i.host_id !== 'host-2') }
      const n3 = id('storefront', 'n3', 'host-3')
      const ensures = (o: Observed): Action[] => plan(desiredFor(rolled, 'host-3'), o).filter(a => a.kind === 'ensure-instance')
      expect(ensures(cutOff)).toEqual([])
      const db = rolled.databases[0]
      if (db === undefined) throw new Error('no database')
      const wait = rollWait(db, n3, cutOff.cluster)
      expect(wait).toEqual({ instanceId: id('storefront', 'n2', 'host-2'), hostId: 'host-2', reason: 'not reported' })
      if (wait === undefined) throw new Error('no wait')
      expect(describeWait(n3, wait, h => h !== 'host-2')).toContain('host host-2 is unreachable')
      // Back in touch, n2 (pending too) restarts first; n3 follows once n2 reports settled.
      expect(ensures(observed)).toEqual([])
      const afterSecond = step(afterFirst, rolled, 'host-2')
      expect(restartsIn(afterSecond, 'host-3', planFor(afterSecond, rolled, 'host-3'))).toEqual([n3])
    })

    it('a node cut off later in the order holds the roll only in its turn; one reported down holds it at once', () => {
      const db = rolled.databases[0]
      if (db === undefined) throw new Error('no database')
      const n1 = id('storefront', 'n1', 'host-1')
      const seenFromHost1 = observedFor(threeConverged, rolled, 'host-1').cluster
      // host-3 (n3) is cut off: n1 and then n2 roll on this side.
      expect(rollWait(db, n1, seenFromHost1.filter(i => i.host_id !== 'host-3'))).toBeUndefined()
      expect(restartsIn(threeConverged, 'host-1', plan(desiredFor(rolled, 'host-1'), { ...observedFor(threeConverged, rolled, 'host-1'), cluster: seenFromHost1.filter(i => i.host_id !== 'host-3') }))).toEqual([n1])
      // n1 restarted and, n3 being cut off, does not replicate from it: settled all the same, so n2 goes next.
      const n2 = id('storefront', 'n2', 'host-2')
      const afterN1 = observe(step(threeConverged, rolled, 'host-1'), rolled)
        .filter(i => i.host_id !== 'host-3')
        .map(i => i.node_name === 'n1' ? { ...i, subscriptions: (i.subscriptions ?? []).map(sub => sub.provider_node === 'n3' ? { ...sub, status: 'down' } : sub) } : i)
      expect(afterN1.find(i => i.id === n1)).toMatchObject({ generation: 2, state: 'available' })
      expect(rollWait(db, n2, afterN1)).toBeUndefined()
      // Reported available, n3 must be replicated from before n1 counts as settled.
      const n3Back = [...afterN1, ...seenFromHost1.filter(i => i.host_id === 'host-3').map(i => ({ ...i, state: 'available' as const, generation: 2, pending_restart: true }))]
      expect(rollWait(db, n2, n3Back)).toEqual({ instanceId: n1, hostId: 'host-1', reason: 'not settled' })
      // n3 reported down: restarting n1 now would leave two nodes refusing writes.
      const down = seenFromHost1.map(i => i.host_id === 'host-3' ? { ...i, state: 'degraded' as const } : i)
      expect(rollWait(db, n1, down)).toEqual({ instanceId: id('storefront', 'n3', 'host-3'), hostId: 'host-3', reason: 'not up' })
    })

    it('in a node with a replica, the replica restarts first and the primary is left to the hand-over', () => {
      const ledgerOnly: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
      const start = converge(emptyWorld(), ledgerOnly)
      const changed: Cluster = { hosts: HOSTS, databases: [database('ledger', { ...ledger, postgresql_conf: { max_wal_senders: 20 } }, { generation: 2 })] }
      const db = changed.databases[0]
      if (db === undefined) throw new Error('no database')
      expect(rollOrder(db).map(e => `${e.nodeName}@${e.hostId}${e.primary ? ' (primary)' : ''}`)).toEqual(['n1@host-2', 'n1@host-1 (primary)', 'n2@host-3 (primary)'])
      // The replica follows a primary at the new generation: the primary writes the change first (and waits).
      let world = start
      const order: string[] = []
      for (let round = 0; round < 6; round++) {
        const passes = ['host-1', 'host-2', 'host-3'].map(h => [h, planFor(world, changed, h)] as const)
        order.push(...passes.flatMap(([h, actions]) => restartsIn(world, h, actions)))
        for (const [h, actions] of passes) world = applyActions(world, h, actions)
      }
      expect(order).toEqual([id('ledger', 'n1', 'host-2')])
      // The replica settled: the primary's turn. It hands over (HA loop); the planner restarts nothing in place.
      const primary = id('ledger', 'n1', 'host-1')
      expect(rollWait(db, primary, observe(world, changed))).toBeUndefined()
      expect(rollsByHandOver(db, primary)).toBe(true)
      expect(planFor(world, changed, 'host-1')).toEqual([])
      // n2 waits for n1's primary to settle.
      expect(rollWait(db, id('ledger', 'n2', 'host-3'), observe(world, changed))).toEqual({ instanceId: primary, hostId: 'host-1', reason: 'not settled' })
    })
  })

  describe('a node with two hosts: a streaming replica on host-2', () => {
    const cluster: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
    const desired = desiredFor(cluster, 'host-2')
    const empty: Observed = { local: [], applied: [], cluster: [] }

    it('waits while the primary is not observed', () => {
      expectGolden('replica-no-primary', plan(desired, empty))
    })

    it('waits while the primary is not available or has no port', () => {
      const modifying = [seen('ledger', 'n1', 'host-1', { state: 'modifying', port: 5433 })]
      expectGolden('replica-primary-modifying', plan(desired, { ...empty, cluster: modifying }))
      expect(plan(desired, { ...empty, cluster: [seen('ledger', 'n1', 'host-1', { port: undefined })] })).toEqual([])
      expect(plan(desired, { ...empty, cluster: [seen('ledger', 'n1', 'host-1', { state: 'failed', port: 5433 })] })).toEqual([])
    })

    it('waits without removing a replica that already exists', () => {
      const world = converge(emptyWorld(), cluster)
      const observed = observedFor(world, cluster, 'host-2')
      expect(plan(desired, { ...observed, cluster: observed.cluster.filter(i => i.host_id !== 'host-1') })).toEqual([])
    })

    it('then is ensured as a replica of the primary: primary {host, port}, no database setup', () => {
      const actions = plan(desired, { ...empty, cluster: [seen('ledger', 'n1', 'host-1', { port: 5433 })] })
      expectGolden('replica-primary-available', actions)
      const action = only(actions, 'ensure-instance')
      expect(action.instanceId).toBe('ledger-n1-9ptayhma')
      expect(action.spec.primary).toEqual({ host: '10.0.0.1', port: 5433 })
      expect(action.spec.database).toBeUndefined()
    })

    it('converged: the replica never gets a replication action; the primary subscribes to n2', () => {
      const world = converge(emptyWorld(), cluster)
      expectGolden('replica-converged-host-2', planFor(world, cluster, 'host-2'))
      expect(hostOf(world, 'host-2').applied.map(a => a.replicationHash)).toEqual([undefined])
      expect(hostOf(world, 'host-1').subscriptions).toEqual({ 'ledger-n1-689qacsi': ['n2'] })
    })
  })

  describe('a node whose primary moved to host-2 (lease term 1 recorded in the document)', () => {
    const before: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
    const world = converge(emptyWorld(), before)
    const moved: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger, { primaries: { n1: { 1: 'ledger-n1-9ptayhma' } } })] }
    const replica = 'ledger-n1-9ptayhma'

    it('the primary waits for synchronous replicas: every replica not stopped, or those the HA loop names', () => {
      const primary = hostOf(world, 'host-1').applied.find(a => a.instanceId === 'ledger-n1-689qacsi')
      expect(primary?.specHash).toBeDefined()
      const ensure = plan(desiredFor(before, 'host-1'), { ...observedFor(world, before, 'host-1'), synchronous: { 'ledger-n1-689qacsi': [] } })
      expect(only(ensure, 'ensure-instance').spec.postgresqlConf?.synchronous_standby_names).toBeUndefined()
      const first = only(planFor(emptyWorld(), before, 'host-1'), 'ensure-instance')
      expect(first.spec.postgresqlConf?.synchronous_standby_names).toBeUndefined()
      const converged = planFor(step(emptyWorld(), before, 'host-1'), before, 'host-1')
      expect(converged.find(a => a.kind === 'ensure-instance')).toMatchObject({ spec: { postgresqlConf: { synchronous_standby_names: 'ANY 1 ("pgmesh_ledger_n1_9ptayhma")' } } })
    })

    it('host-2 promotes its replica only while it holds the lease', () => {
      expect(planFor(world, moved, 'host-2')).toEqual([])
      const actions = plan(desiredFor(moved, 'host-2'), { ...observedFor(world, moved, 'host-2'), leases: [replica] })
      expectGolden('primary-moved-promote-host-2', actions)
      const promote = only(actions, 'promote-instance')
      expect(promote.replicaSlots).toEqual(['pgmesh_ledger_n1_689qacsi'])
      expect(promote.peers).toEqual(['n2'])
    })

    it('host-1 rebuilds its former primary as a replica once the new primary is up, and the peers follow it', () => {
      expect(planFor(world, moved, 'host-1')).toEqual([])
      const promoted = applyActions(world, 'host-2', plan(desiredFor(moved, 'host-2'), { ...observedFor(world, moved, 'host-2'), leases: [replica] }))
      const host2 = planFor(promoted, moved, 'host-2')
      expect(kinds(host2)).toEqual([`ensure-instance ${replica}`])
      const afterEnsure = applyActions(promoted, 'host-2', host2)
      const rebuild = planFor(afterEnsure, moved, 'host-1')
      expectGolden('primary-moved-rebuild-host-1', rebuild)
      expect(only(rebuild, 'rebuild-instance').spec.primary).toEqual({ host: '10.0.0.2', port: 5433 })
      const converged = converge(applyActions(afterEnsure, 'host-1', rebuild), moved)
      expect(hostOf(converged, 'host-2').subscriptions[replica]).toEqual(['n2'])
      expect(hostOf(converged, 'host-1').local.map(l => l.role)).toEqual(['replica'])
      // n2 subscribes to n1 through its new primary on host-2.
      const n2 = converge(world, before)
      expect(hostOf(n2, 'host-3').subscriptions).toEqual(hostOf(converged, 'host-3').subscriptions)
      const repoint = planFor(applyActions(afterEnsure, 'host-2', planFor(afterEnsure, moved, 'host-2')), moved, 'host-3')
      expect(only(repoint, 'ensure-replication').providers).toEqual([{ nodeName: 'n1', dsn: 'host=10.0.0.2 port=5433 dbname=ledger user=pgmesh' }])
    })

    it('a fenced primary is kept stopped: nothing is ensured for it', () => {
      const stopped = setLocalState(world, 'host-1', 'ledger-n1-689qacsi', 'stopped')
      expect(plan(desiredFor(before, 'host-1'), { ...observedFor(stopped, before, 'host-1'), fenced: ['ledger-n1-689qacsi'] })).toEqual([])
      expect(kinds(planFor(stopped, before, 'host-1'))).toEqual(['ensure-instance ledger-n1-689qacsi'])
    })
  })

  describe('instance operations: stop, start, restart', () => {
    const cluster: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
    const world = converge(emptyWorld(), cluster)
    const withOps = (ops: DesiredDatabase['instanceOperations']): Cluster => ({ hosts: HOSTS, databases: [database('ledger', ledger, { instanceOperations: ops })] })
    const replica = 'ledger-n1-9ptayhma'

    it('stops an instance kept stopped, and leaves it stopped', () => {
      const stop = withOps({ [replica]: { stopped: true, restarts: 0, task_id: 't' } })
      const actions = planFor(world, stop, 'host-2')
      expectGolden('operation-stop-host-2', actions)
      expect(kinds(actions)).toEqual([`stop-instance ${replica}`])
      expect(planFor(applyActions(world, 'host-2', actions), stop, 'host-2')).toEqual([])
      // The primary no longer waits for it.
      const primary = planFor(world, stop, 'host-1')
      expect(only(primary, 'ensure-instance').spec.postgresqlConf?.synchronous_standby_names).toBeUndefined()
    })

    it('a primary holding its lease is left to the HA loop, which hands the node over before stopping it', () => {
      const primary = 'ledger-n1-689qacsi'
      const stop = withOps({ [primary]: { stopped: true, restarts: 0, task_id: 't' } })
      expect(plan(desiredFor(stop, 'host-1'), { ...observedFor(world, stop, 'host-1'), leases: [primary] })).toEqual([])
      expect(kinds(planFor(world, stop, 'host-1'))).toEqual([`stop-instance ${primary}`])
    })

    it('starts it again once the stop is lifted', () => {
      const stopped = setLocalState(world, 'host-2', replica, 'stopped')
      expect(kinds(planFor(stopped, withOps({ [replica]: { stopped: false, restarts: 0, task_id: 't' } }), 'host-2'))).toEqual([`ensure-instance ${replica}`])
    })

    it('restarts once per request, at its scheduled time', () => {
      const restart = withOps({ [replica]: { stopped: false, restarts: 1, task_id: 't' } })
      const actions = planFor(world, restart, 'host-2')
      expect(actions).toEqual([{ kind: 'restart-instance', databaseId: 'ledger', instanceId: replica, restarts: 1 }])
      expect(planFor(applyActions(world, 'host-2', actions), restart, 'host-2')).toEqual([])
      const later = withOps({ [replica]: { stopped: false, restarts: 1, task_id: 't', restart_at: '2030-01-01T00:00:00.000Z' } })
      const observed = observedFor(world, later, 'host-2')
      expect(plan(desiredFor(later, 'host-2'), { ...observed, now: Date.parse('2029-12-31T23:59:59Z') })).toEqual([])
      expect(kinds(plan(desiredFor(later, 'host-2'), { ...observed, now: Date.parse('2030-01-01T00:00:01Z') }))).toEqual([`restart-instance ${replica}`])
    })
  })

  describe('a node removed from the spec', () => {
    const removed: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithoutN3, { generation: 2 })] }

    it('host-1 first brings n1 to the new generation', () => {
      const actions = planFor(threeConverged, removed, 'host-1')
      expectGolden('node-removed-host-1-generation', actions)
      expect(only(actions, 'ensure-instance').generation).toBe(2)
    })

    it('then n1 replicates with fewer nodes, so its subscription to n3 is dropped', () => {
      const world = step(step(threeConverged, removed, 'host-1'), removed, 'host-2')
      const actions = planFor(world, removed, 'host-1')
      expectGolden('node-removed-host-1-replication', actions)
      const action = only(actions, 'ensure-replication')
      expect(action.nodes).toEqual(['n1', 'n2'])
      expect(action.providers.map(p => p.nodeName)).toEqual(['n2'])
    })

    it('host-3 removes its n3 instance', () => {
      const actions = planFor(threeConverged, removed, 'host-3')
      expectGolden('node-removed-host-3', actions)
      expect(only(actions, 'remove-instance')).toEqual({ kind: 'remove-instance', instanceId: 'storefront-n3-ant97dj4', databaseId: 'storefront' })
    })

    it('converges to a two-node mesh', () => {
      const world = converge(threeConverged, removed)
      expect(hostOf(world, 'host-3')).toEqual({ local: [], applied: [], subscriptions: {} })
      expect(hostOf(world, 'host-1').subscriptions).toEqual({ 'storefront-n1-689qacsi': ['n2'] })
      expect(hostOf(world, 'host-2').subscriptions).toEqual({ 'storefront-n2-9ptayhma': ['n1'] })
    })
  })

  describe('a deleted database', () => {
    const deleted: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger), database('storefront', storefront, { generation: 2, deleted: true })] }

    it('host-1 removes its storefront instance and keeps ledger', () => {
      const actions = planFor(bothConverged, deleted, 'host-1')
      expectGolden('deleted-host-1', actions)
      expect(kinds(actions)).toEqual(['remove-instance storefront-n1-689qacsi'])
    })

    it('host-2 removes its storefront instance and keeps the ledger replica', () => {
      const actions = planFor(bothConverged, deleted, 'host-2')
      expectGolden('deleted-host-2', actions)
      expect(kinds(actions)).toEqual(['remove-instance storefront-n2-9ptayhma'])
    })

    it('a host with two instances of the database removes both', () => {
      const gone: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithN4, { generation: 3, deleted: true, sources: { n4: 'n1' } })] }
      const actions = planFor(withN4Converged, gone, 'host-2')
      expectGolden('deleted-two-local-instances', actions)
      expect(kinds(actions)).toEqual(['remove-instance storefront-n2-9ptayhma', 'remove-instance storefront-n4-9ptayhma'])
      const world = converge(withN4Converged, gone)
      for (const hostId of ['host-1', 'host-2', 'host-3']) expect(hostOf(world, hostId).local).toEqual([])
    })

    it('the spec of a deleted database does not matter', () => {
      const invalid: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger), database('storefront', undefined, { generation: 2, deleted: true })] }
      expect(planFor(bothConverged, invalid, 'host-1')).toEqual(planFor(bothConverged, deleted, 'host-1'))
    })
  })

  describe('an invalid merged spec or a paused database: nothing removed, nothing ensured', () => {
    it('invalid spec: a crashed instance is left alone', () => {
      const invalid: Cluster = { hosts: HOSTS, databases: [database('storefront', undefined, { generation: 2 })] }
      const world = setLocalState(threeConverged, 'host-1', 'storefront-n1-689qacsi', 'crashed')
      expectGolden('invalid-spec-host-1', planFor(world, invalid, 'host-1'))
      for (const hostId of ['host-2', 'host-3']) expect(planFor(world, invalid, hostId)).toEqual([])
    })

    it('paused: a node removed by the canceled update is not removed', () => {
      const paused: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithoutN3, { generation: 2, paused: true })] }
      expectGolden('paused-host-3', planFor(threeConverged, paused, 'host-3'))
    })

    it('paused: a generation bump, a changed spec and a crashed instance are not acted on', () => {
      const changed: DatabaseSpec = { ...storefront, postgresql_conf: { ...storefront.postgresql_conf, max_connections: 400 } }
      const paused: Cluster = { hosts: HOSTS, databases: [database('storefront', changed, { generation: 2, paused: true })] }
      const world = setLocalState(threeConverged, 'host-1', 'storefront-n1-689qacsi', 'crashed')
      expectGolden('paused-host-1', planFor(world, paused, 'host-1'))
      // Unpaused, the same state is acted on.
      expect(kinds(planFor(world, { ...paused, databases: [database('storefront', changed, { generation: 2 })] }, 'host-1')))
        .toEqual(['ensure-instance storefront-n1-689qacsi'])
    })

    // "Keep whatever runs" covers an instance whose ensure never completed (or whose applied record was lost) too.
    it('paused: a local instance without an applied record is not removed either', () => {
      const paused: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront, { paused: true })] }
      const observed = observedFor(threeConverged, paused, 'host-1')
      expect(plan(desiredFor(paused, 'host-1'), { ...observed, applied: [] })).toEqual([])
    })
  })

  describe('local instances that need attention', () => {
    it('a crashed instance is ensured again (same generation, same spec hash)', () => {
      const world = setLocalState(threeConverged, 'host-1', 'storefront-n1-689qacsi', 'crashed')
      const actions = planFor(world, three, 'host-1')
      expectGolden('crashed-instance-host-1', actions)
      expect(only(actions, 'ensure-instance').specHash).toBe(hostOf(threeConverged, 'host-1').applied[0]?.specHash)
      expect(planFor(setLocalState(threeConverged, 'host-1', 'storefront-n1-689qacsi', 'stopped'), three, 'host-1')).toEqual(actions)
      // A starting instance is healthy: nothing to do.
      expect(planFor(setLocalState(threeConverged, 'host-1', 'storefront-n1-689qacsi', 'starting'), three, 'host-1')).toEqual([])
    })

    it('an instance that is not running at all is ensured again', () => {
      const world = structuredClone(threeConverged)
      hostOf(world, 'host-1').local = []
      expect(kinds(planFor(world, three, 'host-1'))).toEqual(['ensure-instance storefront-n1-689qacsi'])
    })

    it('unknown local instances are removed: one with no record, one this host should not run', () => {
      const world = structuredClone(threeConverged)
      const host = hostOf(world, 'host-1')
      host.local.push({ instanceId: 'scratch-n1-689qacsi', state: 'running', role: 'primary', port: 5440, postgresVersion: '17.6' })
      host.local.push({ instanceId: 'storefront-n2-689qacsi', state: 'crashed', port: 5441, postgresVersion: '17.6' })
      host.applied.push({ instanceId: 'storefront-n2-689qacsi', databaseId: 'storefront', nodeName: 'n2', generation: 1, specHash: '0123456789abcdef' })
      const actions = planFor(world, three, 'host-1')
      expectGolden('unknown-local-instances-host-1', actions)
      expect(actions).toEqual([
        { kind: 'remove-instance', instanceId: 'scratch-n1-689qacsi', databaseId: undefined },
        { kind: 'remove-instance', instanceId: 'storefront-n2-689qacsi', databaseId: 'storefront' }
      ])
    })
  })

  describe('a new node n4 with sources {n4: n1}', () => {
    it('host-2 brings n2 to the new generation and creates n4 on its own port', () => {
      const actions = planFor(threeConverged, withN4, 'host-2')
      expectGolden('new-node-host-2-instances', actions)
      expect(kinds(actions)).toEqual(['ensure-instance storefront-n2-9ptayhma', 'ensure-instance storefront-n4-9ptayhma'])
    })

    // Every host has applied generation 2; n4 runs but has not replicated yet.
    const applied = ['host-1', 'host-2', 'host-3'].reduce((w, hostId) => step(w, withN4, hostId), threeConverged)

    it('no replication action for n4 while n1 is not a provider (n2 replicates without n1)', () => {
      const world = setLocalState(applied, 'host-1', 'storefront-n1-689qacsi', 'crashed')
      const actions = planFor(world, withN4, 'host-2')
      expectGolden('new-node-source-down', actions)
      const action = only(actions, 'ensure-replication')
      expect(action.nodeName).toBe('n2')
      expect(action.providers.map(p => p.nodeName)).toEqual(['n3'])
      expect(action.nodes).toEqual(['n1', 'n2', 'n3', 'n4'])
      // n1 available but not node_ready is no provider either.
      const observed = observedFor(applied, withN4, 'host-2')
      const notReady = observed.cluster.map(i => i.node_name === 'n1' ? { ...i, node_ready: undefined } : i)
      expect(plan(desiredFor(withN4, 'host-2'), { ...observed, cluster: notReady })).toEqual(actions)
    })

    it('then n4 replicates from every ready peer and copies from n1', () => {
      const actions = planFor(applied, withN4, 'host-2')
      expectGolden('new-node-source-up', actions)
      expect(kinds(actions)).toEqual(['ensure-replication storefront-n2-9ptayhma', 'ensure-replication storefront-n4-9ptayhma'])
      const n4 = actions[1]
      if (n4?.kind !== 'ensure-replication') throw new Error('expected n4 replication')
      expect(n4.sourceNode).toBe('n1')
      expect(n4.node).toEqual({ nodeName: 'n4', dsn: 'host=10.0.0.2 port=5433 dbname=storefront user=pgmesh' })
      expect(n4.providers.map(p => p.nodeName)).toEqual(['n1', 'n2', 'n3'])
    })

    it('peers subscribe to n4 only once it is node_ready, and the cluster converges to a four-node mesh', () => {
      const n1 = planFor(applied, withN4, 'host-1')
      expect(only(n1, 'ensure-replication').providers.map(p => p.nodeName)).toEqual(['n2', 'n3'])
      expect(Object.values(hostOf(withN4Converged, 'host-2').subscriptions)).toEqual([['n1', 'n3', 'n4'], ['n1', 'n2', 'n3']])
      expect(hostOf(withN4Converged, 'host-1').subscriptions).toEqual({ 'storefront-n1-689qacsi': ['n2', 'n3', 'n4'] })
    })

    // A node's source matters for its first membership only: once n1 is removed, n4 still follows the spec.
    it('n4 still replicates after its source n1 is removed from the spec', () => {
      const withoutN1: DatabaseSpec = { ...storefrontWithN4, nodes: storefrontWithN4.nodes.filter(n => n.name !== 'n1') }
      const cluster: Cluster = { hosts: HOSTS, databases: [database('storefront', withoutN1, { generation: 3, sources: { n4: 'n1' } })] }
      const world = converge(withN4Converged, cluster)
      expect(hostOf(world, 'host-2').subscriptions['storefront-n4-9ptayhma']).toEqual(['n2', 'n3'])
    })
  })

  describe('a development cluster on 127.0.0.1 with random ports', () => {
    const dev: Cluster = { hosts: LOOPBACK_HOSTS, databases: [database('storefront', devStorefront)] }

    it('listens on 127.0.0.1, port 0, one peer address', () => {
      const actions = planFor(emptyWorld(LOOPBACK_HOSTS), dev, 'host-1')
      expectGolden('loopback-new-database-host-1', actions)
      const action = only(actions, 'ensure-instance')
      expect([action.spec.port, action.spec.listenAddresses, action.spec.peerAddresses]).toEqual([0, ['127.0.0.1'], ['127.0.0.1']])
    })

    it('replicates with the ports the instances got', () => {
      const world = structuredClone(converge(emptyWorld(LOOPBACK_HOSTS), dev))
      delete hostOf(world, 'host-1').applied[0]?.replicationHash
      const actions = planFor(world, dev, 'host-1')
      expectGolden('loopback-replication-host-1', actions)
      expect(only(actions, 'ensure-replication').providers.map(p => p.dsn)).toEqual([
        'host=127.0.0.1 port=5460 dbname=storefront user=pgmesh',
        'host=127.0.0.1 port=5470 dbname=storefront user=pgmesh'
      ])
    })
  })

  it('a single-node database creates its replication node with no providers', () => {
    const single: Cluster = { hosts: LOOPBACK_HOSTS, databases: [database('sandbox', sandbox)] }
    const world = step(emptyWorld(LOOPBACK_HOSTS), single, 'host-1')
    const actions = planFor(world, single, 'host-1')
    expectGolden('single-node-host-1', actions)
    const action = only(actions, 'ensure-replication')
    expect([action.providers, action.nodes]).toEqual([[], ['n1']])
  })

  it("passes orchestrator_opts.swarm to the instance spec (a node's replaces the database's), and nothing when unset", () => {
    const withOpts: DatabaseSpec = {
      ...storefront,
      orchestrator_opts: { swarm: { image: 'db-image:1', extra_labels: { tier: 'gold' } } },
      nodes: storefront.nodes.map(n => n.name === 'n2' ? { ...n, orchestrator_opts: { swarm: { image: 'node-image:2' } } } : n)
    }
    const cluster: Cluster = { hosts: HOSTS, databases: [database('storefront', withOpts)] }
    const swarmOf = (hostId: string): unknown => only(planFor(emptyWorld(), cluster, hostId), 'ensure-instance').spec.swarm
    expect(swarmOf('host-1')).toEqual({ image: 'db-image:1', extraLabels: { tier: 'gold' } })
    expect(swarmOf('host-2')).toEqual({ image: 'node-image:2' })
    expect('swarm' in only(planFor(emptyWorld(), three, 'host-1'), 'ensure-instance').spec).toBe(false)
  })

  describe('idempotence: once everything is applied, no actions', () => {
    const states = (): Array<{ name: string, cluster: Cluster, world: World }> => {
      const bumped: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront, { generation: 2 })] }
      const removed: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithoutN3, { generation: 2 })] }
      const ledgerOnly: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
      const dev: Cluster = { hosts: LOOPBACK_HOSTS, databases: [database('storefront', devStorefront)] }
      const single: Cluster = { hosts: LOOPBACK_HOSTS, databases: [database('sandbox', sandbox)] }
      const deleted: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger), database('storefront', storefront, { generation: 2, deleted: true })] }
      const invalid: Cluster = { hosts: HOSTS, databases: [database('storefront', undefined, { generation: 2 })] }
      const paused: Cluster = { hosts: HOSTS, databases: [database('storefront', storefrontWithoutN3, { generation: 2, paused: true })] }
      const empty: Cluster = { hosts: HOSTS, databases: [] }
      return [
        { name: 'empty cluster', cluster: empty, world: emptyWorld() },
        { name: 'three nodes', cluster: three, world: threeConverged },
        { name: 'two databases', cluster: both, world: bothConverged },
        { name: 'generation bump', cluster: bumped, world: converge(threeConverged, bumped) },
        { name: 'node removed', cluster: removed, world: converge(threeConverged, removed) },
        { name: 'node with a replica', cluster: ledgerOnly, world: converge(emptyWorld(), ledgerOnly) },
        { name: 'new node n4', cluster: withN4, world: withN4Converged },
        { name: 'database deleted', cluster: deleted, world: converge(bothConverged, deleted) },
        { name: 'invalid spec', cluster: invalid, world: threeConverged },
        { name: 'paused', cluster: paused, world: threeConverged },
        { name: 'loopback cluster', cluster: dev, world: converge(emptyWorld(LOOPBACK_HOSTS), dev) },
        { name: 'single node', cluster: single, world: converge(emptyWorld(LOOPBACK_HOSTS), single) }
      ]
    }

    it('every host of every converged scenario plans nothing, deterministically and without changing its inputs', () => {
      const checked: string[] = []
      for (const { name, cluster, world } of states()) {
        for (const { id: hostId } of cluster.hosts) {
          const desired = deepFreeze(desiredFor(cluster, hostId))
          const observed = deepFreeze(observedFor(world, cluster, hostId))
          expect(plan(desired, observed), `${name}, ${hostId}`).toEqual([])
          checked.push(`${name}/${hostId}`)
        }
      }
      expect(checked).toHaveLength(36)
    })

    it('the same inputs give the same actions, in any order of the observed lists', () => {
      const observed = observedFor(withN4Converged, withN4, 'host-2')
      const stale = { ...observed, applied: observed.applied.map(a => ({ ...a, replicationHash: undefined })) }
      const actions = plan(desiredFor(withN4, 'host-2'), stale)
      expect(actions).toHaveLength(2)
      expect(plan(desiredFor(withN4, 'host-2'), { ...stale, cluster: [...stale.cluster].reverse() })).toEqual(actions)
      expect(plan({ ...desiredFor(withN4, 'host-2'), databases: [...withN4.databases].reverse() }, stale)).toEqual(actions)
    })
  })
})

describe('an in-place restore under way', () => {
  const restoringN2: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront, { generation: 2, restoring: { n2: 'task-n2' } })] }

  it('the restored node\'s primary gets no action (the restore runner owns it) and is kept', () => {
    const actions = planFor(threeConverged, restoringN2, 'host-2')
    expect(actions).toEqual([])
  })

  it('the other nodes drop it from their membership (subscriptions and slots go), and take it back afterwards', () => {
    const during = only(planFor(threeConverged, restoringN2, 'host-1'), 'ensure-instance')
    expect(during.instanceId).toBe(id('storefront', 'n1', 'host-1'))
    const applied = step(threeConverged, restoringN2, 'host-1')
    const replication = only(planFor(applied, restoringN2, 'host-1'), 'ensure-replication')
    expect(replication.nodes).toEqual(['n1', 'n3'])
    expect(replication.providers.map(p => p.nodeName)).not.toContain('n2')
    const done: Cluster = { hosts: HOSTS, databases: [database('storefront', storefront, { generation: 2 })] }
    const after = only(planFor(step(applied, restoringN2, 'host-1'), done, 'host-1'), 'ensure-replication')
    expect(after.nodes).toEqual(['n1', 'n2', 'n3'])
  })

  it('a restored node\'s replicas go, and come back as fresh clones once it is done', () => {
    const ledgerOnly: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger)] }
    const start = converge(emptyWorld(), ledgerOnly)
    const restoring: Cluster = { hosts: HOSTS, databases: [database('ledger', ledger, { generation: 2, restoring: { n1: 'task-n1' } })] }
    expect(kinds(planFor(start, restoring, 'host-2'))).toEqual([`remove-instance ${id('ledger', 'n1', 'host-2')}`])
    expect(planFor(start, restoring, 'host-1')).toEqual([])
  })
})
