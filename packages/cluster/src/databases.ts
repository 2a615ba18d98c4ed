import {
  ACTIVE_TASK_STATUSES, type DatabaseRecord, type DatabaseSpec, type DatabaseState, DatabaseAlreadyExistsError, DatabaseNotModifiableError, InvalidInputError,
  type InstanceOperation, NotFoundError, type ObservedInstance, type ObservedSubscription, type PrimaryChangeRequest, type Task, formatIssues, instanceId, invalidInput, isIdentifier,
  IDENTIFIER_MESSAGE, mergeSecrets, nodePrimary, newUuid, redactSpec, rfc3339, ServerError, transitionTask, validateSpec, type Issue,
  type AvailableUpgrade, availableUpgrades, EMBEDDED_MANIFEST, checkUpgrade, type CurrentVersion, compareVersions, type TaskType, unknownVersionIssues,
  upgradeNotAvailable, usesSpock, type VersionManifest
} from '@pgmesh/model'
import { type ClusterState, type FieldConflict, materializeMap, writeDiff } from '@pgmesh/state'
import { decodeSpec, encodeSpec, isKeyedListKey, type KeyedList, mergeOrders } from './spec-encoding.js'
import type { ObservedSnapshot } from './observed-cluster.js'
import type { Tasks } from './tasks.js'
import { conflictView, type DatabaseConflict } from './conflict-view.js'
import { DatabaseCache } from './database-cache.js'
import type { DataKey } from './data-key.js'
import { openSecrets, sealSecrets, secretMarker, withoutSecrets } from './spec-secrets.js'
import { type DiffEntry, jsonDiff } from './json-diff.js'
import { type HostRemovalEdit, specWithoutHost } from './host-removal.js'
import { unmountedRepositoryIssue } from './swarm-repositories.js'
import { type PortClaim, portClaims, portIssues } from './port-claims.js'

/** A database as the reconciler needs it: unredacted, and only a spec that is valid after the merge. */
export interface DesiredDatabaseRecord {
  id: string
  generation: number
  deleted: boolean
  task_id: string
  spec: DatabaseSpec | undefined
  sources: Record<string, string>
  primaries: Record<string, Record<string, string>>
  instanceOperations: Record<string, InstanceOperation>
  primaryChanges: Record<string, PrimaryChangeRequest>
  /** Nodes with an in-place restore under way (the node_restore task of each). */
  restoring?: Record<string, string>
}

export interface DatabaseView {
  id: string
  tenant_id?: string
  created_at: string
  updated_at: string
  state: DatabaseState
  spec: Record<string, unknown>
  instances: Array<Record<string, unknown>>
  conflicts?: DatabaseConflict[]
  spec_errors?: string[]
  /** Only with `include=available_upgrades`, and only when there is one. */
  available_upgrades?: AvailableUpgrade[]
}

/** What the cache keeps per database; views share it, so it is never mutated after it is built. */
interface CachedDatabase {
  record: DatabaseRecord
  /** Deleted, and the delete finished: gone for clients. */
  gone: boolean
  view: Omit<DatabaseView, 'instances'>
  placements: Placement[]
  /** The fixed ports its instances listen on (none: most databases let their hosts pick). */
  ports?: PortClaim[]
  /** The host ids the spec names (nodes' and services'): what its validation asks of the known hosts. */
  hostIds: string[]
  desired: DesiredDatabaseRecord
}

export interface DatabaseContext {
  hostId: string
  state: ClusterState
  tasks: Tasks
  /** Every reachable host's reported instances, this host's included, versioned. */
  observed: () => ObservedSnapshot
  /** Ids of the hosts in the cluster, for spec validation. */
  knownHostIds: () => ReadonlySet<string>
  defaultPostgresVersion: string | undefined
  /** The cluster's data key, which seals the spec's secrets in the document; undefined before init/join. */
  dataKey: () => DataKey | undefined
  /** This host's version manifest (embedded, with the operator's file merged over it); default the embedded one. */
  manifest?: () => VersionManifest
}

/**
 * Databases' desired state: create, update and delete write the spec into the cluster document field by field, so
 * edits made on different hosts, also while apart, merge; every read validates the merged spec again.
 */
export class Databases {
  private readonly cache: DatabaseCache<CachedDatabase>
  private listed: { version: string, databases: readonly DatabaseView[] } | undefined

  constructor (private readonly ctx: DatabaseContext) {
    this.cache = new DatabaseCache(ctx.state, id => this.build(id), entry => entry.record.task_id, entry => entry.hostIds)
  }

  private manifest (): VersionManifest {
    return this.ctx.manifest?.() ?? EMBEDDED_MANIFEST
  }

  private record (id: string): DatabaseRecord | undefined {
    return this.ctx.state.doc.databases?.[id]
  }

  /**
   * Databases that exist (not deleted, or deleted with their delete still in progress), built once per change:
   * `version` moves whenever the document or what the hosts report moved, so callers can keep what they derive
   * from the list (a serialized response) until it does. The views are shared: never mutate them.
   */
  list (): { version: string, databases: readonly DatabaseView[] } {
    const observed = this.ctx.observed()
    const version = `${this.cache.version()}.${observed.version}`
    if (this.listed?.version !== version) {
      const databases = this.cache.all()
        .map(cached => this.viewOf(cached, observed.byId))
        .filter((v): v is DatabaseView => v !== undefined)
      this.listed = { version, databases }
    }
    return this.listed
  }

  get (id: string): DatabaseView {
    const view = this.tryView(id)
    if (view === undefined) throw new NotFoundError('database not found')
    return view
  }

  /**
   * The stored record as plain JSON with every map hosts created concurrently in it merged key by key (a
   * `postgresql_conf` each side created while apart holds both sides' keys), and the conflicts in its spec. A keyed
   * list's order written on both sides is merged too: a conflict only when the sides order shared items differently.
   */
  private readRecord (id: string, heads?: string[]): { record: DatabaseRecord, specConflicts: FieldConflict[] } | undefined {
    const read = this.ctx.state.readMerged<DatabaseRecord>(['databases', id], heads)
    if (read === undefined) return undefined
    const record = read.value
    const specConflicts: FieldConflict[] = []
    for (const conflict of read.conflicts) {
      // Only what the user wrote: bookkeeping fields (generation, updated_at, task_id) race on every concurrent edit.
      if (!conflict.path.startsWith('spec.')) continue
      const [, list, leaf, ...deeper] = conflict.path.split('.')
      if (list !== undefined && isKeyedListKey(list) && leaf === 'order' && deeper.length === 0 && conflict.values.every(Array.isArray)) {
        const merged = mergeOrders(conflict.values as unknown[][])
        ;(record.spec[list] as KeyedList).order = merged.order
        if (!merged.conflicting) continue
      }
      specConflicts.push(conflict)
    }
    return { record, specConflicts }
  }

  /** Everything about a database that only the document decides, computed once per change to it. */
  private build (id: string): CachedDatabase | undefined {
    const read = this.readRecord(id)
    if (read === undefined) return undefined
    const { record } = read
    // Secrets are opened here, once per change, for validation and for the reconciler's record only: the view is
    // redacted, and nothing else reads them.
    const opened = openSecrets(decodeSpec(record.spec), this.ctx.dataKey())
    const spec = opened.spec
    const check = validateSpec(spec, { knownHostIds: this.ctx.knownHostIds(), databaseId: id })
    const view: Omit<DatabaseView, 'instances'> = {
      id: record.id,
      ...(record.tenant_id === undefined ? {} : { tenant_id: record.tenant_id }),
      created_at: record.created_at,
      updated_at: record.updated_at,
      state: record.deleted ? 'deleting' : record.state,
      spec: redactSpec(spec as never) as Record<string, unknown>
    }
    const conflicts = this.conflicts(id, read.specConflicts)
    if (conflicts.length > 0) view.conflicts = conflicts
    const ports = portClaims(id, spec)
    if (!record.deleted && (!check.ok || opened.problems.length > 0)) {
      view.spec_errors = [...opened.problems, ...(check.ok ? [] : formatIssues(check.issues).split('\n'))]
      view.state = 'failed'
    }
    return {
      record,
      gone: record.deleted && this.ctx.tasks.get(record.task_id)?.status === 'completed',
      view,
      placements: placementsOf(id, spec),
      ...(ports.length === 0 ? {} : { ports }),
      hostIds: namedHostIds(spec),
      desired: {
        id, generation: record.generation, deleted: record.deleted, task_id: record.task_id,
        spec: check.ok && opened.problems.length === 0 ? check.spec : (record.deleted ? spec as unknown as DatabaseSpec : undefined),
        sources: record.node_sources ?? {},
        primaries: record.primaries ?? {},
        instanceOperations: record.instance_operations ?? {},
        primaryChanges: record.primary_changes ?? {},
        restoring: Object.fromEntries(Object.values(record.node_restores ?? {}).map(r => [r.node_name, r.task_id]))
      }
    }
  }

  private tryView (id: string): DatabaseView | undefined {
    const cached = this.cache.get(id)
    return cached === undefined ? undefined : this.viewOf(cached, this.ctx.observed().byId)
  }

  private viewOf (cached: CachedDatabase, observed: ReadonlyMap<string, ObservedInstance>): DatabaseView | undefined {
    if (cached.gone) return undefined
    const instances = instancesOf(cached.placements, observed, this.backingUp(cached.record))
    const view: DatabaseView = { ...cached.view, instances }
    // As the anchor derives it since #461: an available database with an instance that is not is degraded (an
    // instance nobody reports, say because its host is unreachable, counts).
    if (view.state === 'available' && instances.some(i => i.state !== 'available' && i.state !== 'backing_up')) view.state = 'degraded'
    return view
  }

  /** Instances a node backup runs on now (the anchor shows them `backing_up` meanwhile). */
  private backingUp (record: DatabaseRecord): ReadonlySet<string> {
    const out = new Set<string>()
    for (const taskId of Object.keys(record.backup_requests ?? {})) {
      const task = this.ctx.tasks.get(taskId)
      if (task?.status === 'running' && task.instance_id !== undefined) out.add(task.instance_id)
    }
    return out
  }

  /**
   * Concurrent values left by a merge, until an update settles them: two creates of the database, and the spec's
   * leaf keys that got different values. Secret values are never shown.
   */
  private conflicts (id: string, specConflicts: readonly FieldConflict[]): DatabaseConflict[] {
    // Asking Automerge for the key's values costs a WebAssembly call per database; most documents surely have one.
    const own = this.ctx.state.mayHoldConcurrentValues(['databases']) ? this.ctx.state.recordConflict('databases', id) : undefined
    // Both sides writing the same value is agreement, not a conflict (say, the same edit sent to two hosts).
    const all = [...(own === undefined || new Set(own.values.map(v => JSON.stringify(v))).size < 2 ? [] : [own]), ...specConflicts]
    return all.map(c => conflictView(c, actor => this.ctx.state.hostOfActor(actor) ?? actor))
  }

  async create (body: { id?: string, tenant_id?: string, spec: unknown }): Promise<{ task: Task, database: DatabaseView }> {
    const id = body.id ?? newUuid()
    const issues: Issue[] = []
    if (!isIdentifier(id)) issues.push({ path: 'id', message: IDENTIFIER_MESSAGE })
    if (body.tenant_id !== undefined && !isIdentifier(body.tenant_id)) issues.push({ path: 'tenant_id', message: IDENTIFIER_MESSAGE })
    const check = validateSpec(body.spec, { knownHostIds: this.ctx.knownHostIds(), databaseId: id })
    if (!check.ok) issues.push(...check.issues)
    else issues.push(...this.versionIssues(check.spec, undefined), ...this.backupIssues(check.spec), ...this.portIssues(id, check.spec))
    if (issues.length > 0 || !check.ok) throw invalidInput(issues)
    const existing = this.record(id)
    if (existing !== undefined && !existing.deleted) throw new DatabaseAlreadyExistsError()
    const spec = withDefaults(check.spec as Record<string, unknown>, this.ctx.defaultPostgresVersion)
    const task = this.ctx.tasks.newTask({ scope: 'database', entity_id: id, database_id: id, type: 'create' })
    const at = rfc3339()
    const primaries = existing === undefined ? {} : termsAbove(existing, id, check.spec)
    const record: DatabaseRecord = {
      id, created_at: at, updated_at: at, state: 'creating', generation: 1, deleted: false, task_id: task.task_id,
      created_by_host: this.ctx.hostId, spec: encodeSpec(sealSecrets(spec, this.ctx.dataKey())), ...(body.tenant_id === undefined ? {} : { tenant_id: body.tenant_id }),
      ...(Object.keys(primaries).length === 0 ? {} : { primaries })
    }
    await this.ctx.state.change({ op: 'database.create', entity: id }, d => {
      // A re-create over a tombstone starts a new record; the old database's tasks stay listed.
      d.databases[id] = structuredClone(record)
      d.tasks[task.task_id] = task
    })
    await this.ctx.tasks.log(task.task_id, 'task created', { host_id: this.ctx.hostId, generation: 1 })
    return { task, database: this.get(id) }
  }

  async update (
    id: string, body: { tenant_id?: string, spec: unknown },
    options: {
      forceUpdate?: boolean, removeHosts?: string[], parentId?: string, taskType?: Extract<TaskType, 'update' | 'upgrade' | 'restore'>
      /** The state the database shows until the task ends (default `modifying`). */
      state?: DatabaseState
      /** Written in the same change as the spec (an in-place restore's node requests). */
      alsoWrite?: (d: Parameters<Parameters<ClusterState['change']>[1]>[0], task: Task) => void
    } = {}
  ): Promise<{ task: Task, database: DatabaseView }> {
    const record = this.readRecord(id)?.record
    if (record === undefined || (record.deleted && this.ctx.tasks.get(record.task_id)?.status === 'completed')) throw new NotFoundError('database not found')
    if (record.deleted) throw new DatabaseNotModifiableError()
    // What GET shows (concurrently created maps merged): writeDiff below writes it over any key holding concurrent
    // values, so the merged maps become one map in the document.
    const opened = openSecrets(decodeSpec(record.spec), this.ctx.dataKey())
    // A stored secret this host cannot open would be dropped by the write below: refuse instead (paths only).
    if (opened.problems.length > 0) throw new ServerError(`the stored spec's secrets cannot be read on this host: ${opened.problems.join('; ')}`)
    const previous = opened.spec
    const issues: Issue[] = []
    if (body.tenant_id !== undefined && body.tenant_id !== record.tenant_id) issues.push({ path: 'tenant_id', message: 'tenant ID cannot be changed' })
    const incoming = isRecordValue(body.spec) ? mergeSecrets(carryVersions(body.spec, previous) as never, previous as never) as unknown : body.spec
    const check = validateSpec(incoming, { knownHostIds: this.ctx.knownHostIds(), previous: previous as never, databaseId: id })
    if (!check.ok) issues.push(...check.issues)
    else issues.push(...this.versionIssues(check.spec, previous as unknown as DatabaseSpec), ...this.backupIssues(check.spec, previous as unknown as DatabaseSpec), ...this.portIssues(id, check.spec))
    for (const h of options.removeHosts ?? []) if (!isIdentifier(h)) issues.push({ path: 'remove_host', message: IDENTIFIER_MESSAGE })
    if (issues.length > 0 || !check.ok) throw invalidInput(issues)
    const spec = withDefaults(check.spec as Record<string, unknown>, this.ctx.defaultPostgresVersion)
    const superseded = this.ctx.tasks.get(record.task_id)
    const task = this.ctx.tasks.newTask({
      scope: 'database', entity_id: id, database_id: id, type: options.taskType ?? 'update',
      ...((options.removeHosts ?? []).length > 0 ? { remove_hosts: options.removeHosts } : {}),
      ...(options.parentId === undefined ? {} : { parent_id: options.parentId })
    })
    const previousNodes = new Set((previous.nodes as Array<{ name: string }> | undefined ?? []).map(n => n.name))
    // A new node with a restore_config (its own, or the database's without a source_node) is made from that backup
    // and copies from no node (the anchor's add-node-from-backup).
    const newNodes = (spec.nodes as Array<{ name: string, source_node?: string, restore_config?: unknown }>)
      .filter(n => !previousNodes.has(n.name) && (n.source_node !== undefined || (n.restore_config ?? spec.restore_config) === undefined))
    const firstExisting = (spec.nodes as Array<{ name: string }>).find(n => previousNodes.has(n.name))?.name
    await this.ctx.state.change({ op: 'database.update', entity: id }, d => {
      const target = d.databases[id] as DatabaseRecord
      // Sealed deterministically: an unchanged secret encrypts to the value already stored, so writeDiff leaves it.
      writeDiff(target.spec as Record<string, unknown>, encodeSpec(sealSecrets(spec, this.ctx.dataKey())))
      for (const n of newNodes) {
        const source = n.source_node ?? firstExisting
        if (source === undefined) continue
        materializeMap(d, target, 'node_sources')[n.name] = source
      }
      target.updated_at = rfc3339()
      target.state = options.state ?? 'modifying'
      target.task_id = task.task_id
      target.generation = target.generation + 1
      d.tasks[task.task_id] = task
      options.alsoWrite?.(d, task)
      // Reconciling is level-triggered: the new spec replaces whatever the previous task was still doing.
      const previous = superseded === undefined ? undefined : d.tasks[superseded.task_id]
      if (previous !== undefined) transitionTask(previous, 'canceled', { error: `superseded by task ${task.task_id}` })
    })
    await this.ctx.tasks.log(task.task_id, 'task created', { host_id: this.ctx.hostId, force_update: options.forceUpdate === true })
    return { task, database: this.get(id) }
  }

  /**
   * Swarm: a postgres_version a create or update sets must be one the version manifest lists (it picks what the
   * instances run). Process hosts run what their packages installed, which the orchestrator checks when it starts
   * an instance.
   */
  private versionIssues (spec: DatabaseSpec, previous: DatabaseSpec | undefined): Issue[] {
    if (this.orchestratorOf(spec) !== 'swarm') return []
    return unknownVersionIssues(this.manifest(), spec, previous)
  }

  /**
   * On a Swarm host a posix or cifs repository, to back up into or to make a new node from, must be on a host path
   * the node's containers mount (unmountedRepositoryIssue).
   */
  private backupIssues (spec: DatabaseSpec, previous?: DatabaseSpec): Issue[] {
    const hosts = this.ctx.state.doc.hosts ?? {}
    const issues: Issue[] = []
    spec.nodes.forEach((node, i) => {
      const own = node.backup_config !== undefined
      ;(node.backup_config ?? spec.backup_config)?.repositories.forEach((repo, j) => {
        const issue = unmountedRepositoryIssue(hosts, spec, node, repo, `${own ? `nodes[${i}].backup_config` : 'backup_config'}.repositories[${j}].base_path`)
        if (issue !== undefined) issues.push(issue)
      })
      // Only new nodes are made from a backup (restore_config means nothing after that).
      const restore = node.restore_config ?? spec.restore_config
      if (restore === undefined || node.source_node !== undefined || previous?.nodes.some(n => n.name === node.name) === true) return
      const issue = unmountedRepositoryIssue(hosts, spec, node, restore.repository, `${node.restore_config !== undefined ? `nodes[${i}].restore_config` : 'restore_config'}.repository.base_path`)
      if (issue !== undefined) issues.push(issue)
    })
    return issues
  }

  /**
   * A fixed port another database's instance already listens on at the same address, on the same host or one sharing
   * a loopback client address (port-claims.ts): refused now, rather than a task that fails when the instance cannot bind.
   */
  private portIssues (id: string, spec: DatabaseSpec): Issue[] {
    const claims = portClaims(id, spec as unknown as Record<string, unknown>)
    if (claims.length === 0) return []
    const others = this.cache.all().filter(c => c.ports !== undefined && !c.gone && c.record.id !== id)
    const hosts = this.ctx.state.doc.hosts ?? {}
    return portIssues(claims, others.flatMap(c => c.ports ?? []), {
      addresses: hostId => hosts[hostId]?.client_addresses ?? [],
      deleting: new Set(others.filter(c => c.record.deleted).map(c => c.record.id))
    })
  }

  /** `process` when any of the spec's hosts runs instances as processes, `swarm` when all run them on Swarm. */
  private orchestratorOf (spec: Pick<DatabaseSpec, 'nodes'>): 'process' | 'swarm' | undefined {
    const hosts = this.ctx.state.doc.hosts ?? {}
    const kinds = new Set(spec.nodes.flatMap(n => n.host_ids).map(h => hosts[h]?.orchestrator))
    if (kinds.has('process')) return 'process'
    return kinds.size === 1 && kinds.has('swarm') ? 'swarm' : undefined
  }

  /** What the manifest offers the database (Swarm databases only): GET's `include=available_upgrades`. */
  availableUpgrades (id: string): AvailableUpgrade[] {
    const spec = this.cache.get(id)?.desired.spec
    if (spec === undefined || this.orchestratorOf(spec) !== 'swarm') return []
    const manifest = this.manifest()
    const current = currentVersion(spec, manifest)
    return current === undefined ? [] : availableUpgrades(manifest, current)
  }

  /**
   * `POST /v1/databases/{id}/upgrade {image}`: the anchor's checks (the image is in the manifest, stable, of the
   * database's Postgres and Spock majors, newer), then an update through the normal path with task type `upgrade`:
   * the database-level image and postgres_version become the image's, and nodes' own versions and images go, so
   * every instance moves. On process hosts there is no image to move to: the answer explains what an upgrade is there.
   */
  async upgrade (id: string, image: string): Promise<{ task: Task, database: DatabaseView }> {
    const record = this.readRecord(id)?.record
    if (record === undefined || (record.deleted && this.ctx.tasks.get(record.task_id)?.status === 'completed')) throw new NotFoundError('database not found')
    if (record.deleted) throw new DatabaseNotModifiableError()
    const opened = openSecrets(decodeSpec(record.spec), this.ctx.dataKey())
    if (opened.problems.length > 0) throw new ServerError(`the stored spec's secrets cannot be read on this host: ${opened.problems.join('; ')}`)
    const spec = structuredClone(opened.spec) as unknown as DatabaseSpec
    const orchestrator = this.orchestratorOf(spec)
    if (orchestrator === 'process') throw upgradeNotAvailable(this.processUpgradeHelp(id, spec))
    if (orchestrator === undefined) throw upgradeNotAvailable('the database\'s hosts are not all Swarm hosts known to this cluster')
    const manifest = this.manifest()
    const current = currentVersion(spec, manifest)
    if (current === undefined) throw upgradeNotAvailable('the database\'s spec names no postgres_version to upgrade from')
    const target = checkUpgrade(manifest, current, image)
    spec.postgres_version = target.postgres_version
    spec.orchestrator_opts = { ...spec.orchestrator_opts, swarm: { ...spec.orchestrator_opts?.swarm, image: target.image } }
    for (const node of spec.nodes) {
      delete node.postgres_version
      if (node.orchestrator_opts?.swarm?.image !== undefined) delete node.orchestrator_opts.swarm.image
    }
    const body = { spec, ...(record.tenant_id === undefined ? {} : { tenant_id: record.tenant_id }) }
    return await this.update(id, body, { taskType: 'upgrade' })
  }

  /**
   * Why a process database has no image upgrade, and what upgrades its minor version instead: the process
   * orchestrator restarts, in the roll, an instance whose installed binary is newer than its server whenever the
   * spec is applied (an update or force_update).
   */
  private processUpgradeHelp (id: string, spec: DatabaseSpec): string {
    const hosts = [...new Set(spec.nodes.flatMap(n => n.host_ids))].sort()
    const running = [...new Set(this.ctx.observed().instances.filter(i => i.database_id === id && i.postgres_version !== undefined).map(i => i.postgres_version as string))]
      .sort(compareVersions)
    const major = spec.postgres_version?.split('.')[0] ?? '<major>'
    return `database ${id} runs on process hosts (${hosts.join(', ')}), whose PostgreSQL is what their installed packages provide, not an image` +
      `${running.length === 0 ? '' : ` (running: ${running.join(', ')})`}; a minor upgrade there is a package upgrade on every host ` +
      `(apt-get install postgresql-${major}; GET /v1/hosts shows each host's installed version in supported_pgedge_versions), then ` +
      `POST /v1/databases/${id}?force_update=true, which restarts each instance whose binaries are newer than its running server, one at a ` +
      'time (the rolling restart)'
  }

  /**
   * `force`: the delete finishes once every reachable host has removed its instances (an unreachable host removes
   * its own when it comes back: the database is deleted in the document it receives).
   */
  async delete (id: string, options: { force?: boolean, parentId?: string } = {}): Promise<{ task: Task }> {
    const record = this.record(id)
    if (record === undefined || (record.deleted && this.ctx.tasks.get(record.task_id)?.status === 'completed')) throw new NotFoundError('database not found')
    if (record.deleted) throw new DatabaseNotModifiableError()
    const task = this.ctx.tasks.newTask({
      scope: 'database', entity_id: id, database_id: id, type: 'delete',
      ...(options.force === true ? { force: true } : {}),
      ...(options.parentId === undefined ? {} : { parent_id: options.parentId })
    })
    const storedSpec = this.readRecord(id)?.record.spec ?? {}
    const superseded = this.ctx.tasks.get(record.task_id)
    await this.ctx.state.change({ op: 'database.delete', entity: id }, d => {
      const target = d.databases[id] as DatabaseRecord
      target.deleted = true
      // The teardown needs no secret: drop them from the current document (the history keeps only ciphertext).
      writeDiff(target.spec as Record<string, unknown>, encodeSpec(withoutSecrets(decodeSpec(storedSpec))))
      target.state = 'deleting'
      target.updated_at = rfc3339()
      target.task_id = task.task_id
      target.generation = target.generation + 1
      d.tasks[task.task_id] = task
      const previous = superseded === undefined ? undefined : d.tasks[superseded.task_id]
      if (previous !== undefined) transitionTask(previous, 'canceled', { error: `superseded by task ${task.task_id}` })
    })
    await this.ctx.tasks.log(task.task_id, 'task created', { host_id: this.ctx.hostId })
    return { task }
  }

  /**
   * How removing `hostId` edits each database whose spec names it (see `specWithoutHost`), from the document as it
   * is now: the nodes still waiting for a replica to take over from a primary on that host are named in each edit.
   */
  hostRemovals (hostId: string): Array<{ id: string, edit: HostRemovalEdit }> {
    const observed = this.ctx.observed().byId
    const out: Array<{ id: string, edit: HostRemovalEdit }> = []
    for (const id of Object.keys(this.ctx.state.doc.databases ?? {}).sort()) {
      const record = this.readRecord(id)?.record
      if (record === undefined || record.deleted) continue
      const edit = specWithoutHost(decodeSpec(record.spec), hostId, (node, hostIds) => servingPrimaryHost(id, node, hostIds, record.primaries?.[node], observed))
      if (edit !== undefined) out.push({ id, edit })
    }
    return out
  }

  /**
   * Writes one database's part of a host's removal as a task of `parentId` (the remove_host task): an update
   * without the host (its instances not waited for), or a delete when no node is left. Undefined when the spec no
   * longer names the host.
   */
  async removeHost (id: string, hostId: string, parentId: string): Promise<Task | undefined> {
    const edit = this.hostRemovals(hostId).find(r => r.id === id)?.edit
    if (edit === undefined) return undefined
    if (edit.spec === undefined) return (await this.delete(id, { force: true, parentId })).task
    const record = this.readRecord(id)?.record
    // The spec with its secrets opened: update() seals them again, unchanged.
    const opened = openSecrets(edit.spec, this.ctx.dataKey()).spec
    const { task } = await this.update(id, { ...(record?.tenant_id === undefined ? {} : { tenant_id: record.tenant_id }), spec: opened }, { removeHosts: [hostId], parentId })
    return task
  }

  /** Every change that touched this database, oldest first. */
  history (id: string): Array<{ version: string, time: string, host_id: string, operation: string }> {
    if (this.record(id) === undefined) throw new NotFoundError('database not found')
    return this.ctx.state.changes()
      .filter(c => c.meta?.entity === id)
      .map(c => ({ version: c.hash, time: rfc3339(c.meta?.at ?? 0), host_id: c.meta?.host ?? '', operation: c.meta?.op ?? '', at: c.meta?.at ?? 0 }))
      .sort((a, b) => a.at - b.at || a.version.localeCompare(b.version))
      .map(({ at: _at, ...rest }) => rest)
  }

  /** What changed in the database between two versions (change hashes); `to` defaults to now, `from` to nothing. */
  diff (id: string, from: string | undefined, to: string | undefined): DiffEntry[] {
    if (this.record(id) === undefined) throw new NotFoundError('database not found')
    const at = (version: string | undefined, which: string): Record<string, unknown> | undefined => {
      if (version === undefined) return which === 'to' ? this.snapshotOf(id, undefined) : undefined
      if (!this.ctx.state.changes().some(c => c.hash === version)) throw new InvalidInputError(`${which}: unknown version ${version}`)
      return this.snapshotOf(id, [version])
    }
    return jsonDiff(at(from, 'from'), at(to, 'to'), '')
  }

  /** The database as GET showed it at a version: the same merged read, so a diff agrees with what clients saw. */
  private snapshotOf (id: string, heads: string[] | undefined): Record<string, unknown> | undefined {
    const plain = this.readRecord(id, heads)?.record
    if (plain === undefined) return undefined
    // Secrets show as a hash of their ciphertext: a diff says one changed, never what it was or became.
    return { state: plain.state, deleted: plain.deleted, tenant_id: plain.tenant_id, spec: redactSpec(decodeSpec(plain.spec) as never, secretMarker) }
  }

  /**
   * Each database's generation and database name, read straight from the document: cheap enough for every heartbeat
   * and read, unlike desired(), which decodes and validates every spec.
   */
  generations (): Map<string, { generation: number, databaseName: string | undefined }> {
    const out = new Map<string, { generation: number, databaseName: string | undefined }>()
    for (const [id, record] of Object.entries(this.ctx.state.doc.databases ?? {})) {
      const name = record.spec?.database_name
      out.set(id, { generation: record.generation, databaseName: typeof name === 'string' ? name : undefined })
    }
    return out
  }

  /** Every database as the reconciler needs it. Never send this to a client: it holds the secrets. */
  desired (): DesiredDatabaseRecord[] {
    return this.cache.all().map(cached => cached.desired)
  }

  /**
   * Moves a database's task to what the hosts reported (or to canceled, once its cancel is honoured), and the database
   * to the matching state. A task already past that status is left alone.
   */
  async settle (id: string, taskId: string, result: { status: 'running' | 'completed' | 'failed' | 'canceled', error?: string }): Promise<void> {
    const at = rfc3339()
    await this.ctx.state.change({ op: `task.${result.status}`, entity: id }, d => {
      const task = d.tasks[taskId]
      if (task === undefined || !transitionTask(task, result.status, { at, ...(result.error === undefined ? {} : { error: result.error }) })) return
      const record = d.databases[id]
      if (record === undefined || record.task_id !== taskId || record.deleted || result.status === 'running') return
      record.state = result.status === 'completed' ? 'available' : 'failed'
      record.updated_at = at
    })
  }

  /**
   * A database whose task failed, once the hosts report its spec reached after all (say, a replication error fixed by
   * hand): back to `available`. The task stays failed. Returns whether the state moved.
   */
  async recover (id: string, taskId: string): Promise<boolean> {
    const stored = this.record(id)
    if (stored === undefined || stored.deleted || stored.task_id !== taskId || stored.state !== 'failed') return false
    await this.ctx.state.change({ op: 'database.recovered', entity: id }, d => {
      const record = d.databases[id]
      if (record === undefined || record.task_id !== taskId || record.state !== 'failed') return
      record.state = 'available'
      record.updated_at = rfc3339()
    })
    return true
  }
}

/**
 * What a database runs, for the manifest's checks: the newest version its spec names (database level or a node's),
 * and its database-level image (the host's default `pgmesh/postgres:<major>` when it names none).
 */
function currentVersion (spec: DatabaseSpec, manifest: VersionManifest): CurrentVersion | undefined {
  const versions = [spec.postgres_version, ...spec.nodes.map(n => n.postgres_version)].filter((v): v is string => v !== undefined)
  const postgresVersion = versions.sort(compareVersions).at(-1)
  if (postgresVersion === undefined) return undefined
  const image = spec.orchestrator_opts?.swarm?.image
  const entry = image === undefined ? undefined : manifest.images.postgres.find(i => i.image === image)
  return {
    postgresVersion,
    ...(entry?.spock_version === undefined ? {} : { spockVersion: entry.spock_version }),
    spock: image === undefined ? false : usesSpock(image, entry?.spock_version)
  }
}

/** The host of the node's primary by the document; for a node with replicas, only once that instance serves as one. */
function servingPrimaryHost (
  databaseId: string, nodeName: string, hostIds: readonly string[], primaries: Record<string, string> | undefined, observed: ReadonlyMap<string, ObservedInstance>
): string | undefined {
  const primary = nodePrimary(databaseId, nodeName, hostIds, primaries)
  const host = hostIds.find(h => instanceId(databaseId, nodeName, h) === primary?.instanceId)
  if (host === undefined || primary === undefined || hostIds.length < 2) return host
  const serving = observed.get(primary.instanceId)
  return serving?.role === 'primary' && ['available', 'modifying', 'degraded'].includes(serving.state) ? host : undefined
}

/** Update keeps the stored postgres/spock versions when the new spec omits them (the anchor's rule). */
function carryVersions (spec: Record<string, unknown>, previous: Record<string, unknown>): Record<string, unknown> {
  const out = { ...spec }
  for (const key of ['postgres_version', 'spock_version']) if (out[key] === undefined && previous[key] !== undefined) out[key] = previous[key]
  return out
}

function withDefaults (spec: Record<string, unknown>, defaultPostgresVersion: string | undefined): Record<string, unknown> {
  if (spec.postgres_version !== undefined || defaultPostgresVersion === undefined) return spec
  return { ...spec, postgres_version: defaultPostgresVersion }
}

interface Placement { id: string, host_id: string, node_name: string }

/**
 * A database created again under the id of a deleted one: each node that had primary terms starts at the term above
 * them, with its first host's instance (where a new node's primary starts anyway). A node's lease is keyed by
 * `<database>/<node>`, and the voters refuse a term below the highest they granted for it: at term 0 the new primary
 * would never hold its lease, so no switchover would start (the task stayed pending for good).
 */
function termsAbove (deleted: DatabaseRecord, id: string, spec: DatabaseSpec): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {}
  for (const node of spec.nodes) {
    const first = node.host_ids[0]
    const highest = Math.max(0, ...Object.keys(deleted.primaries?.[node.name] ?? {}).map(Number).filter(Number.isInteger))
    if (highest > 0 && first !== undefined) out[node.name] = { [String(highest + 1)]: instanceId(id, node.name, first) }
  }
  return out
}

/** Every host id a spec names in its nodes and services, whatever else is wrong with it. */
function namedHostIds (spec: Record<string, unknown>): string[] {
  const out = new Set<string>()
  for (const list of [spec.nodes, spec.services]) {
    if (!Array.isArray(list)) continue
    for (const item of list as Array<{ host_ids?: unknown }>) {
      if (Array.isArray(item?.host_ids)) for (const h of item.host_ids) if (typeof h === 'string') out.add(h)
    }
  }
  return [...out]
}

/** The instances a spec places: one per host of each node, sorted as responses list them. */
function placementsOf (databaseId: string, spec: Record<string, unknown>): Placement[] {
  const nodes = Array.isArray(spec.nodes) ? spec.nodes as Array<{ name?: unknown, host_ids?: unknown }> : []
  const out: Placement[] = []
  for (const node of nodes) {
    if (typeof node.name !== 'string' || !Array.isArray(node.host_ids)) continue
    for (const hostId of node.host_ids) {
      if (typeof hostId === 'string') out.push({ id: instanceId(databaseId, node.name, hostId), host_id: hostId, node_name: node.name })
    }
  }
  return out.sort((a, b) => a.node_name.localeCompare(b.node_name) || a.id.localeCompare(b.id))
}

/**
 * The anchor's Instance fields for each placed instance, with what its host reports; unreported is `unknown`. A
 * running primary with a failing subscription (reported with `failing_since`: down with an apply error, or stalled,
 * for 10 s while its provider is up) is `degraded` here, with that error; its host reports it `available`, because
 * what the planner and the HA loop read is whether the server itself serves (a degraded primary would be failed over).
 */
function instancesOf (
  placements: readonly Placement[], observed: ReadonlyMap<string, ObservedInstance>, backingUp: ReadonlySet<string>
): Array<Record<string, unknown>> {
  const lag = subscriptionLag(placements, observed)
  return placements.map(({ id, host_id, node_name }) => {
    const o = observed.get(id)
    if (o === undefined) return { id, host_id, node_name, state: 'unknown' }
    const failing = o.role === 'primary' ? o.subscriptions?.find(s => s.status === 'down' && s.failing_since !== undefined) : undefined
    const state = o.state === 'available' && backingUp.has(id) ? 'backing_up' : o.state === 'available' && failing !== undefined ? 'degraded' : o.state
    const error = o.error ?? (failing === undefined ? undefined : `subscription ${failing.name}: ${failing.error ?? 'down'}`)
    return {
      id, host_id, node_name, state, status_updated_at: o.updated_at,
      ...(error === undefined ? {} : { error }),
      ...(o.port === undefined ? {} : { connection_info: { addresses: o.addresses ?? [], port: o.port } }),
      postgres: { ...(o.postgres_version === undefined ? {} : { version: o.postgres_version }), ...(o.role === undefined ? {} : { role: o.role }) },
      ...(o.role === 'primary' && o.subscriptions !== undefined
        ? { spock: { ...(o.replication === undefined ? {} : { extension: o.replication }), subscriptions: withLag(o.subscriptions, node_name, lag), ...(o.unreplicated_ddl === undefined ? {} : { unreplicated_ddl: o.unreplicated_ddl }) } }
        : {})
    }
  })
}

/**
 * Lag is measured on the provider (its slot for the subscriber), the subscription is reported by the subscriber: the
 * read joins them, `provider>subscriber` → bytes, from each node's primary.
 */
function subscriptionLag (placements: readonly Placement[], observed: ReadonlyMap<string, ObservedInstance>): Map<string, number> {
  const lag = new Map<string, number>()
  for (const { id, node_name } of placements) {
    const o = observed.get(id)
    if (o?.role !== 'primary') continue
    for (const l of o.subscriber_lag ?? []) lag.set(`${node_name}>${l.subscriber_node}`, l.lag_bytes)
  }
  return lag
}

function withLag (subscriptions: readonly ObservedSubscription[], subscriber: string, lag: ReadonlyMap<string, number>): ObservedSubscription[] {
  return subscriptions.map(s => {
    const bytes = lag.get(`${s.provider_node}>${subscriber}`)
    return bytes === undefined ? s : { ...s, lag_bytes: bytes }
  })
}

function isRecordValue (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}
