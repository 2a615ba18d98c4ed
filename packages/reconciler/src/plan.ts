import { createHash } from 'node:crypto'
import {
  type BackupConfigSpec, type DatabaseSetup, type InstanceBackup, type InstanceRestore, type RestoreConfigSpec, type DatabaseSpec, effectiveNode, formatDsn, instanceId, type InstanceSpec, nodePrimary, type NodeSpec,
  type ObservedInstance, type OrchestratorOpts, replicaSlotName, type SettingValue, type SwarmInstanceOptions, SYSTEM_SUPERUSER
} from '@pgmesh/model'
import { rollsByHandOver, rollWait } from './roll.js'
import type { Action, Desired, DesiredDatabase, Observed } from './types.js'

export function hashOf (value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16)
}

/**
 * What this host must do, given the converged desired state and what is observed. Pure: the same inputs always give
 * the same actions, and once everything is applied it gives none. Each action's executor is this host, derived from
 * the document alone: an instance is managed by the host it is placed on; a node's subscriptions are created by the
 * host of that node's primary: the instance the highest recorded lease term names, else the node's first host's.
 */
export function plan (desired: Desired, observed: Observed): Action[] {
  const actions: Action[] = []
  const me = desired.hostId
  const addresses = new Map(desired.hosts.map(h => [h.id, h.addresses]))
  const myAddresses = addresses.get(me) ?? []
  const peerAddresses = [...new Set(desired.hosts.flatMap(h => h.addresses))].sort()
  const local = new Map(observed.local.map(i => [i.instanceId, i]))
  const applied = new Map(observed.applied.map(a => [a.instanceId, a]))
  const wanted = new Set<string>()
  const leases = new Set(observed.leases ?? [])
  const fenced = new Set(observed.fenced ?? [])

  for (const db of [...desired.databases].sort((a, b) => a.id.localeCompare(b.id))) {
    if (db.deleted) continue
    const spec = db.spec
    if (spec === undefined || db.paused) {
      // Keep whatever runs: an invalid merged spec or a canceled task must not tear anything down.
      for (const a of observed.applied) if (a.databaseId === db.id) wanted.add(a.instanceId)
      for (const l of observed.local) if (l.instanceId.startsWith(`${db.id}-`)) wanted.add(l.instanceId)
      continue
    }
    for (const node of spec.nodes) {
      const effective = effectiveNode(spec, node.name)
      if (effective === undefined) continue
      const primary = nodePrimary(db.id, node.name, effective.host_ids, db.primaries?.[node.name])
      if (primary === undefined) continue
      const primaryHost = effective.host_ids.find(h => instanceId(db.id, node.name, h) === primary.instanceId)
      const restoring = db.restoring?.[node.name] !== undefined
      for (const hostId of effective.host_ids) {
        if (hostId !== me) continue
        const id = instanceId(db.id, node.name, hostId)
        // An in-place restore owns the node's primary (the restore runner); its replicas go, to be cloned afresh
        // from the restored primary once the restore is done (the anchor tears them down too).
        if (restoring && id !== primary.instanceId) continue
        wanted.add(id)
        if (restoring) continue
        const current = local.get(id)
        const last = applied.get(id)
        const operation = db.instanceOperations?.[id]
        const isPrimary = id === primary.instanceId
        if (operation?.stopped === true) {
          // Kept stopped by the user until started again. A primary holding its lease is stopped by the HA loop,
          // which first hands the node over to a replica.
          const handingOver = isPrimary && leases.has(id)
          if (current !== undefined && current.state !== 'stopped' && !handingOver) actions.push({ kind: 'stop-instance', databaseId: db.id, instanceId: id })
          continue
        }
        // A primary that lost its lease stays stopped until it holds the lease again (or follows the new primary).
        if (isPrimary && fenced.has(id)) continue
        let standbyOf: InstanceSpec['primary']
        if (!isPrimary && primaryHost !== undefined) {
          const p = findObserved(observed.cluster, primary.instanceId)
          const host = addresses.get(primaryHost)?.[0]
          // A replica is cloned from a running primary; until there is one, wait.
          if (p?.port === undefined || p.state !== 'available' || p.role !== 'primary' || host === undefined) continue
          standbyOf = { host, port: p.port }
        }
        const postgresqlConf = { ...effective.postgresql_conf } as Record<string, SettingValue>
        if (isPrimary && last !== undefined) {
          // An acknowledged commit is on the replicas too, so promoting one loses nothing accepted. Only from the
          // primary's second pass on: its first one creates the database, before any replica exists.
          const others = effective.host_ids.map(h => instanceId(db.id, node.name, h)).filter(other => other !== id)
          const standbys = (observed.synchronous?.[id] ?? others.filter(other => db.instanceOperations?.[other]?.stopped !== true))
            .filter(other => others.includes(other))
          // Every listed replica acknowledges every commit, so any of them can take over without a loss.
          if (standbys.length > 0) postgresqlConf.synchronous_standby_names = `ANY ${standbys.length} (${standbys.map(s => `"${replicaSlotName(s)}"`).join(', ')})`
        }
        const instanceSpec: InstanceSpec = {
          instanceId: id,
          ...(effective.postgres_version === undefined ? {} : { postgresVersion: effective.postgres_version }),
          port: effective.port ?? 0,
          // Loopback too: pgEdge's docs connect with `psql -h localhost`, and the anchor's published ports answer on
          // every interface.
          listenAddresses: [...new Set([...myAddresses, '127.0.0.1'])],
          peerAddresses,
          postgresqlConf,
          pgHbaConf: effective.pg_hba_conf,
          pgIdentConf: effective.pg_ident_conf,
          ...(standbyOf === undefined ? { database: databaseSetup(spec) } : { primary: standbyOf }),
          ...swarmOptions(effective.orchestrator_opts),
          ...backupOptions(db.id, node.name, effective.backup_config),
          ...(standbyOf === undefined ? restoreOptions(effective.restore_config, spec.database_name) : {})
        }
        const specHash = hashOf(instanceSpec)
        const role = last?.role ?? current?.role
        if (isPrimary && role === 'replica') {
          // Promoted only while holding the node's lease, which the host's lease loop asks for.
          if (leases.has(id) && current?.state === 'running') {
            const replicaSlots = effective.host_ids.map(h => instanceId(db.id, node.name, h)).filter(other => other !== id).map(replicaSlotName)
            actions.push({ kind: 'promote-instance', databaseId: db.id, nodeName: node.name, instanceId: id, databaseName: spec.database_name, replicaSlots, peers: spec.nodes.map(n => n.name).filter(n => n !== node.name).sort() })
          }
          continue
        }
        if (!isPrimary && role === 'primary') {
          if (standbyOf !== undefined) actions.push({ kind: 'rebuild-instance', databaseId: db.id, nodeName: node.name, instanceId: id, generation: db.generation, specHash, spec: instanceSpec })
          continue
        }
        const healthy = current !== undefined && (current.state === 'running' || current.state === 'starting')
        // A running server restarts for a change only in its turn of the rolling restart (roll.ts); a server not
        // running starts with the change. Decided only where an ensure is due: a converged pass never asks.
        const restartNow = (): boolean => !healthy || (rollWait(db, id, observed.cluster) === undefined && !rollsByHandOver(db, id))
        if (!healthy || last?.specHash !== specHash || last.generation !== db.generation) {
          // A changed generation with an identical instance spec only needs its record updated; the orchestrator
          // call is idempotent and cheap then.
          actions.push({ kind: 'ensure-instance', databaseId: db.id, nodeName: node.name, instanceId: id, generation: db.generation, specHash, spec: restartNow() ? instanceSpec : { ...instanceSpec, deferRestart: true } })
          continue
        }
        if (current.pendingRestart === true && restartNow()) {
          actions.push({ kind: 'ensure-instance', databaseId: db.id, nodeName: node.name, instanceId: id, generation: db.generation, specHash, spec: instanceSpec })
          continue
        }
        const restarts = operation?.restarts ?? 0
        const restartDue = operation?.restart_at === undefined || observed.now === undefined || Date.parse(operation.restart_at) <= observed.now
        if (restarts > (last.restarts ?? 0) && restartDue) {
          actions.push({ kind: 'restart-instance', databaseId: db.id, instanceId: id, restarts })
          continue
        }
        if (!isPrimary) continue
        // A node whose primary moved has been a member all along: it never copies from a source again.
        const joined = last.replicationHash !== undefined || primary.term > 0
        const replication = replicationAction(db, spec, node.name, id, current.port, desired, observed.cluster, addresses, joined)
        if (replication !== undefined && last.replicationHash !== replication.hash) actions.push(replication)
      }
    }
  }

  for (const instance of observed.local) {
    if (!wanted.has(instance.instanceId)) {
      actions.push({ kind: 'remove-instance', instanceId: instance.instanceId, databaseId: applied.get(instance.instanceId)?.databaseId })
    }
  }
  return actions
}

function findObserved (cluster: readonly ObservedInstance[], id: string): ObservedInstance | undefined {
  return cluster.find(i => i.id === id)
}

/** Only when set, so that instance specs (and their hashes) of databases without swarm options stay as they were. */
function swarmOptions (opts: OrchestratorOpts | undefined): { swarm?: SwarmInstanceOptions } {
  const swarm = opts?.swarm
  const volumes = swarm?.extra_volumes ?? []
  if (swarm?.image === undefined && swarm?.extra_labels === undefined && volumes.length === 0) return {}
  return {
    swarm: {
      ...(swarm?.image === undefined ? {} : { image: swarm.image }),
      ...(swarm?.extra_labels === undefined ? {} : { extraLabels: swarm.extra_labels }),
      ...(volumes.length === 0 ? {} : { extraVolumes: volumes.map(v => ({ hostPath: v.host_path, destinationPath: v.destination_path })) })
    }
  }
}

/** Only when set, like swarmOptions: instance specs of databases without backups keep their hashes. */
function backupOptions (databaseId: string, nodeName: string, config: BackupConfigSpec | undefined): { backup?: InstanceBackup } {
  return config === undefined ? {} : { backup: { databaseId, nodeName, repositories: config.repositories } }
}

/**
 * A primary whose node has a restore_config is made from that backup when it is created (read only then). Only when
 * set, like backupOptions.
 */
function restoreOptions (config: RestoreConfigSpec | undefined, databaseName: string): { restore?: InstanceRestore } {
  if (config === undefined) return {}
  return {
    restore: {
      sourceDatabaseId: config.source_database_id, sourceNodeName: config.source_node_name, sourceDatabaseName: config.source_database_name,
      databaseName, repository: config.repository, options: { ...config.restore_options }
    }
  }
}

function databaseSetup (spec: DatabaseSpec): DatabaseSetup {
  return {
    name: spec.database_name,
    users: (spec.database_users ?? []).map(u => ({
      username: u.username,
      ...(u.password === undefined ? {} : { password: u.password }),
      ...(u.db_owner === undefined ? {} : { dbOwner: u.db_owner }),
      ...(u.attributes === undefined ? {} : { attributes: u.attributes }),
      ...(u.roles === undefined ? {} : { roles: u.roles })
    })),
    scripts: {
      ...(spec.scripts?.post_init === undefined ? {} : { postInit: spec.scripts.post_init }),
      ...(spec.scripts?.post_database_create === undefined ? {} : { postDatabaseCreate: spec.scripts.post_database_create })
    }
  }
}

function replicationAction (
  db: DesiredDatabase, spec: DatabaseSpec, nodeName: string, id: string, port: number, desired: Desired,
  cluster: readonly ObservedInstance[], addresses: Map<string, string[]>, joined: boolean
): Extract<Action, { kind: 'ensure-replication' }> | undefined {
  const host = addresses.get(desired.hostId)?.[0]
  if (host === undefined) return undefined
  const dsn = (h: string, p: number): string => formatDsn({ host: h, port: p, dbname: spec.database_name, user: SYSTEM_SUPERUSER })
  const node: NodeSpec = { nodeName, dsn: dsn(host, port) }
  const providers: NodeSpec[] = []
  const restoring = (name: string): boolean => db.restoring?.[name] !== undefined
  for (const other of spec.nodes) {
    // A node being restored takes no part: its subscriptions and slots here go, and come back once it is restored.
    if (other.name === nodeName || restoring(other.name)) continue
    const otherPrimaryInstance = nodePrimary(db.id, other.name, other.host_ids, db.primaries?.[other.name])
    const otherPrimary = other.host_ids.find(h => instanceId(db.id, other.name, h) === otherPrimaryInstance?.instanceId)
    if (otherPrimary === undefined) continue
    const observed = findObserved(cluster, instanceId(db.id, other.name, otherPrimary))
    const otherHost = addresses.get(otherPrimary)?.[0]
    // Subscribing to a node that does not exist in the replication extension yet fails: wait until it says so.
    if (observed?.port === undefined || observed.state !== 'available' || observed.node_ready !== true || otherHost === undefined) continue
    providers.push({ nodeName: other.name, dsn: dsn(otherHost, observed.port) })
  }
  // Copying from a source is for a node's first membership only, and only while that source is still a node.
  const candidate = db.sources[nodeName]
  const sourceNode = joined || candidate === undefined || !spec.nodes.some(n => n.name === candidate) ? undefined : candidate
  // A new node waits for its source to be up: its first subscription copies schema and rows from it.
  if (sourceNode !== undefined && !providers.some(p => p.nodeName === sourceNode)) return undefined
  const nodes = spec.nodes.map(n => n.name).filter(n => !restoring(n)).sort()
  const body = { node, providers, nodes, databaseName: spec.database_name, ...(sourceNode === undefined ? {} : { sourceNode }) }
  return { kind: 'ensure-replication', databaseId: db.id, nodeName, instanceId: id, generation: db.generation, hash: hashOf(body), ...body }
}
